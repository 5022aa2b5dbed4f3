//! Test guest: a component that imports an interface cloudfn does not provide and exports
//! no handler, so deploy must reject it and name the import.
wit_bindgen::generate!({
    inline: "
        package acme:billing;
        interface charge { charge: func(cents: u32) -> bool; }
        world wrong { import charge; export run: func() -> bool; }
    ",
});

struct Wrong;

impl Guest for Wrong {
    fn run() -> bool {
        acme::billing::charge::charge(100)
    }
}

export!(Wrong);
