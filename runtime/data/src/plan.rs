//! The run plan as the data steps read it: the plan crate's types (kiln-plan), the one
//! contract between the compiler and the runtime. A plan of another version is refused by
//! its loader.

pub use kiln_plan::spec::{
    ClassifierLabels, ClassifierSpec, ExactDedupSpec as ExactDedupParams, KeepRule, KlMax, KlSpec,
    NearDedupSpec as NearDedupParams, QualitySpec as QualityParams, SourceSpec as Source,
    TokenizerKind,
};
pub use kiln_plan::step::{
    EncodeParams, IngestParams, KlReferenceParams, MixParams, SampleParams, ScoreParams, Step,
    StepKind, StepParams, TokenizerParams, TrainClassifierParams,
};
pub use kiln_plan::{PlanError, PLAN_VERSION};

/// The plan, its analysis read as JSON (the data steps do not read it).
pub type Plan = kiln_plan::RunPlan;
