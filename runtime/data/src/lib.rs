//! kiln's data pipeline: the data steps of a run plan, and `kiln data …` on their own.
//! Pure Rust (no libtorch): the `kiln` binary links it.

pub mod exact;
pub mod filters;
pub mod ingest;
pub mod near;
pub mod normalize;
