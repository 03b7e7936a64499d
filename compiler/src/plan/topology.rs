//! Rank placement and process groups, in Megatron-LM's order.

pub use kiln_plan::topology::{Groups, Rank, Topology};

/// The sizes of a run: nodes, GPUs per node and each parallel dimension.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub nodes: u32,
    pub gpus_per_node: u32,
    pub tensor: u32,
    pub context: u32,
    pub data: u32,
    pub pipeline: u32,
    pub virtual_stages: u32,
}

/// Places ranks as Megatron-LM's parallel_state does with its default order "tp-cp-ep-dp-pp":
/// rank = tensor + t·(context + c·(data + d·pipeline)). Tensor groups are runs of t
/// consecutive ranks, so they stay inside a node whenever t divides the GPUs per node;
/// ranks fill nodes in order (node = rank / gpus_per_node).
pub fn place(layout: Layout, stage_layers: Vec<u32>) -> Topology {
    let Layout {
        nodes,
        gpus_per_node,
        tensor: t,
        context: c,
        data: d,
        pipeline: p,
        virtual_stages,
    } = layout;
    let world = t * c * d * p;
    let ranks: Vec<Rank> = (0..world)
        .map(|rank| Rank {
            rank,
            node: rank / gpus_per_node,
            local_rank: rank % gpus_per_node,
            tensor: rank % t,
            context: rank / t % c,
            data: rank / (t * c) % d,
            pipeline: rank / (t * c * d),
        })
        .collect();
    // Every group: the ranks that share all coordinates but one, in order of that one.
    let group = |key: &dyn Fn(&Rank) -> (u32, u32, u32)| {
        let mut groups: std::collections::BTreeMap<(u32, u32, u32), Vec<u32>> = Default::default();
        for r in &ranks {
            groups.entry(key(r)).or_default().push(r.rank);
        }
        groups.into_values().collect::<Vec<_>>()
    };
    let groups = Groups {
        tensor: group(&|r| (r.pipeline, r.data, r.context)),
        context: group(&|r| (r.pipeline, r.data, r.tensor)),
        data: group(&|r| (r.pipeline, r.context, r.tensor)),
        pipeline: group(&|r| (r.data, r.context, r.tensor)),
    };
    Topology {
        world,
        nodes,
        gpus_per_node,
        tensor: t,
        context: c,
        data: d,
        pipeline: p,
        virtual_stages,
        stage_layers,
        ranks,
        groups,
    }
}
