//! The `config` interface: a function's variables, fixed at deploy.

use crate::bindings::cloudfn::function::config;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The host side of the `config` interface: the version's variables.
pub struct ConfigHost(pub Arc<BTreeMap<String, String>>);

impl config::Host for ConfigHost {
    fn get_var(&mut self, name: String) -> Option<String> {
        self.0.get(&name).cloned()
    }

    fn get_vars(&mut self) -> Vec<(String, String)> {
        self.0.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl crate::bindings::cloudfn::function::types::Host for ConfigHost {}
