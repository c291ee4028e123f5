//! compass-sim's own subset of the Connector and Director schemas, with the
//! real schemas' type, field and argument names (a test compares them).

pub mod connector;
pub mod director;
pub mod errors;
pub mod operations;
pub mod paging;
pub mod scalars;

/// The Connector schema in SDL, as compass-sim serves it.
pub fn connector_sdl() -> String {
    connector::schema_without_data().sdl()
}

/// The Director schema in SDL, as compass-sim serves it.
pub fn director_sdl() -> String {
    director::schema_without_data().sdl()
}
