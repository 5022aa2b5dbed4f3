//! cloudfn-config: the `config` capability (`wit/config.wit`): a function's variables, fixed
//! at deploy (`cloudfn deploy --var`, the console's form). An HTTP function gets them as
//! environment variables instead (the runtime's WASI context).
//!
//! The variables are the version's, which the runtime holds for the call; it hands them to this
//! capability through [`HasVars`], so a call makes no state of its own for it.

use cloudfn_capability::{Capability, HasInstances};
use std::collections::BTreeMap;
use wasmtime::component::{HasData, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        interfaces: "import cloudfn:function/config@0.1.0;",
    });
}

use bindings::cloudfn::function::config;

/// The interface's name in the `cloudfn:function` package.
pub const INTERFACE: &str = "config";

/// A store's data that holds the call's variables.
pub trait HasVars {
    /// The version's variables.
    fn vars(&mut self) -> &BTreeMap<String, String>;
}

/// The capability, as the runtime lists it.
pub struct Config;

impl<T: HasInstances + HasVars> Capability<T> for Config {
    fn interface(&self) -> &'static str {
        INTERFACE
    }

    fn add_to_linker(&self, linker: &mut Linker<T>) -> wasmtime::Result<()> {
        config::add_to_linker::<T, VarsData>(linker, |s: &mut T| Vars(s.vars()))
    }
}

struct VarsData;

impl HasData for VarsData {
    type Data<'a> = Vars<'a>;
}

/// The host side of the `config` interface: the version's variables.
struct Vars<'a>(&'a BTreeMap<String, String>);

impl config::Host for Vars<'_> {
    fn get_var(&mut self, name: String) -> Option<String> {
        self.0.get(&name).cloned()
    }

    fn get_vars(&mut self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
