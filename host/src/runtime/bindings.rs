//! Host-side bindings of the `projector:projection` world, generated from `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "projection",
    imports: { default: trappable },
});

pub(super) use self::projector::projection::types;
