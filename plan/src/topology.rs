//! Rank placement and process groups as the plan lists them (the compiler places ranks in
//! Megatron-LM's order; the runtime forms its groups from these lists).

use serde::{Deserialize, Serialize};

/// Where one rank runs and its coordinate in every parallel dimension.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rank {
    pub rank: u32,
    pub node: u32,
    pub local_rank: u32,
    pub tensor: u32,
    pub context: u32,
    pub data: u32,
    pub pipeline: u32,
}

/// The ranks of every group of each dimension; each dimension's groups partition the world.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Groups {
    pub tensor: Vec<Vec<u32>>,
    pub context: Vec<Vec<u32>>,
    pub data: Vec<Vec<u32>>,
    pub pipeline: Vec<Vec<u32>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Topology {
    pub world: u32,
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub tensor: u32,
    pub context: u32,
    pub data: u32,
    pub pipeline: u32,
    pub virtual_stages: u32,
    /// Layers on each pipeline stage, first to last.
    pub stage_layers: Vec<u32>,
    pub ranks: Vec<Rank>,
    pub groups: Groups,
}

/// The parallel sizes a training step runs with (the plan's topology, per step).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Sizes {
    pub tensor: u32,
    pub pipeline: u32,
    pub context: u32,
    pub data: u32,
}
