//! Host bindings generated from `wit/switchyard.wit`: both worlds share the
//! `types` and `host` interfaces (generated once, for `transform`).

wasmtime::component::bindgen!({
    path: "wit",
    world: "transform",
    exports: { default: async },
});

pub mod sink {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "sink",
        exports: { default: async },
        with: {
            "switchyard:plugin/types": super::switchyard::plugin::types,
            "switchyard:plugin/host": super::switchyard::plugin::host,
        },
    });
}
