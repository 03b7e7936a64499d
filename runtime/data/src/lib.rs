//! kiln's data pipeline: the data steps of a run plan, and `kiln data …` on their own.
//! Pure Rust (no libtorch): the `kiln` binary links it.

pub mod cli;
pub mod exact;
pub mod filters;
pub mod ingest;
pub mod mix;
pub mod near;
pub mod normalize;
pub mod ops;
pub mod plan;
pub mod progress;
pub mod sample;
pub mod scores;
pub mod shards;
pub mod stats;
pub mod steps;
pub mod tokenize;
