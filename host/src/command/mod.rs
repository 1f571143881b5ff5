//! What only the `projector` command needs, kept out of the library: the admin API client
//! behind `projector projections ...` and the plugin scaffolding behind `projector new`.

pub(crate) mod cli;
pub(crate) mod scaffold;
