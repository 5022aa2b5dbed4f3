//! cloudfn-capability: the seam a guest capability plugs into.
//!
//! A capability is a WIT interface of the `cloudfn:function` package that the host implements
//! for guests: every interface a guest imports (`invoke`, `log`, `config`, `openapi`, and what
//! comes next: a database, storage, ...). Each lives in a crate of its own that owns its
//! interface's file in `wit/`, its `bindgen!`, its host implementation and its per-call state,
//! and implements [`Capability`]. The runtime assembles the list of capabilities in one place
//! (`cloudfn_runtime::capabilities`) and links each into the linker every function shares.
//!
//! A capability reaches its call in one of two ways. One whose host functions work on what the
//! runtime holds for the call anyway (the nested-call function, the log, the variables) defines
//! a view trait the store's data implements and makes no state (`instance` answers `None`), the
//! way `wasmtime-wasi`'s `WasiView` works. One with state of its own (`openapi`: whom the call
//! may act as) answers [`Capability::instance`]: when a call's guest first calls into such a
//! capability, the runtime asks every capability for its instance, keeps them in the store's
//! [`Instances`], and the host functions reach theirs through [`instance`]. A call that uses
//! none makes no state.
//!
//! This crate knows nothing of the runtime's store type: a capability is generic over it
//! (`T: HasInstances`), so capability crates do not depend on the runtime and the runtime can
//! depend on them (the shape of Spin's `spin-factors`, with wasmtime's `add_to_linker` style).
//! What a capability needs from the host for a call (an upstream client, a database) comes
//! through [`Services`], which the host fills once, by type.

use std::any::{Any, TypeId};
use std::time::Instant;
use wasmtime::component::Linker;

/// The most capabilities one runtime links: a call's [`Instances`] is a fixed array, so that
/// making one costs no allocation.
pub const MAX_CAPABILITIES: usize = 8;

/// A guest capability: a host interface, linked once, with state per call.
pub trait Capability<T: HasInstances>: Send + Sync + 'static {
    /// The interface's name in the `cloudfn:function` package (e.g. `openapi`): what a guest
    /// may import because this capability is linked.
    fn interface(&self) -> &'static str;

    /// Adds the interface's host functions to `linker`; each reaches the call's instance with
    /// [`instance`].
    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()>;

    /// This capability's state for one call (its type is what the host functions'
    /// [`instance`] asks for; a zero-sized state allocates nothing), or none for a capability
    /// whose host functions reach what the runtime holds for the call through a view trait
    /// of the store's data instead (`log`, `config`, `invoke`: the `wasmtime-wasi`
    /// `WasiView` style), which leave this method out.
    fn instance(&self, call: &CallInfo<'_>) -> Option<Box<dyn Any + Send>> {
        let _ = call;
        None
    }
}

/// What a capability sees of the call it serves.
pub struct CallInfo<'a> {
    /// The env the function runs in.
    pub env: &'a str,
    /// The function's name.
    pub function: &'a str,
    /// The env's owner app (empty for a file run's env, which has none).
    pub owner: &'a str,
    /// APPID: the caller's app when it is the env's own.
    pub appid: Option<&'a str>,
    /// FROM_APPID: the calling app when the call crosses apps through a share.
    pub from_appid: Option<&'a str>,
    /// When the call's time is up.
    pub deadline: Instant,
    /// What the host provides capabilities.
    pub services: &'a Services,
}

/// What the host provides capabilities (an upstream client, a database handle), one value per
/// type; a capability looks up its own. Filled once when the host starts.
#[derive(Default)]
pub struct Services(Vec<(TypeId, Box<dyn Any + Send + Sync>)>);

impl Services {
    /// Provides `value`, replacing an earlier value of its type.
    pub fn insert<S: Any + Send + Sync>(&mut self, value: S) {
        let id = TypeId::of::<S>();
        self.0.retain(|(t, _)| *t != id);
        self.0.push((id, Box::new(value)));
    }

    /// The value of type `S`, if the host provides one.
    pub fn get<S: Any>(&self) -> Option<&S> {
        let id = TypeId::of::<S>();
        self.0
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref())
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Services({} provided)", self.0.len())
    }
}

/// A call's instances of the capabilities, by type.
#[derive(Default)]
pub struct Instances {
    slots: [Option<Box<dyn Any + Send>>; MAX_CAPABILITIES],
}

impl Instances {
    /// Keeps `instance` for the call.
    ///
    /// # Panics
    /// With more than [`MAX_CAPABILITIES`] instances: the runtime refuses to link more.
    pub fn push(&mut self, instance: Box<dyn Any + Send>) {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.is_none())
            .expect("more capabilities than MAX_CAPABILITIES");
        *slot = Some(instance);
    }

    /// The call's instance of type `I`.
    pub fn get<I: Any>(&mut self) -> Option<&mut I> {
        self.slots
            .iter_mut()
            .flatten()
            .find_map(|s| s.downcast_mut::<I>())
    }
}

/// A store's data that holds the call's [`Instances`].
pub trait HasInstances: Send + 'static {
    /// The call's capability instances.
    fn instances(&mut self) -> &mut Instances;
}

/// The call's instance of type `I`: the getter a capability's `add_to_linker` passes its
/// `bindgen!`-generated `add_to_linker`, e.g. `|s: &mut T| instance::<T, MyState>(s)`.
///
/// # Panics
/// When the call has no such instance: the runtime makes the instance of every capability that
/// has one, so this is a capability whose `instance` returned another type (or none) than its
/// host functions ask for, a bug its first test shows.
pub fn instance<T: HasInstances, I: Any>(state: &mut T) -> &mut I {
    state.instances().get::<I>().unwrap_or_else(|| {
        panic!(
            "the call has no {} instance: a capability's `instance` must return the type its \
             host functions ask for",
            std::any::type_name::<I>()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_instances_are_found_by_type() {
        let mut services = Services::default();
        services.insert(7u32);
        services.insert(String::from("a"));
        services.insert(9u32);
        assert_eq!(services.get::<u32>(), Some(&9));
        assert_eq!(services.get::<String>().map(String::as_str), Some("a"));
        assert!(services.get::<u64>().is_none());

        let mut instances = Instances::default();
        assert!(instances.get::<u32>().is_none());
        instances.push(Box::new(1u32));
        instances.push(Box::new(String::from("x")));
        *instances.get::<u32>().unwrap() += 1;
        assert_eq!(instances.get::<u32>(), Some(&mut 2));
        assert_eq!(instances.get::<String>().map(|s| s.as_str()), Some("x"));
    }
}
