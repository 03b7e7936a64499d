//! Collectives for data-parallel training: all-reduce, reduce-scatter, all-gather and
//! broadcast of flat fp32 buffers, through MPI between CPU processes (OpenMPI, through the
//! `mpi` crate; in buckets) or NCCL between GPUs (`nccl`, its unique id broadcast over
//! MPI), with a count of the bytes each rank sends.
//!
//! # What is counted
//! Each rank's sent bytes are counted as the bandwidth-optimal algorithms send them, the
//! volumes kiln's communication analysis (compiler `analyse/comm.rs`) predicts: for a
//! buffer of S bytes over n ranks, a ring all-reduce sends 2(n−1)/n·S per rank (Patarasuk &
//! Yuan 2009, "Bandwidth optimal all-reduce algorithms", Sec. 3), a reduce-scatter of an
//! S-byte input or an all-gather into an S-byte output (n−1)/n·S (Thakur, Rabenseifner &
//! Gropp 2005, "Optimization of collective communication operations in MPICH", Sec. 4), a
//! broadcast by scatter and all-gather 2(n−1)/n·S (ibid., van de Geijn's algorithm). The
//! library may choose another algorithm for a given size; the count is the volume the
//! trainer asks for, which is what the prediction is about.
//!
//! Scalars the trainer reduces for its metrics (the loss, the gradient norm of ZeRO shards)
//! are counted apart, in [`SentBytes::metrics`].

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;

/// Elements per bucket: flat buffers are reduced in pieces of at most this many fp32
/// values (16 MiB), as DDP's and DeepSpeed's buckets (25 MB and 500M elements by default)
/// bound the temporary memory of a collective.
pub const BUCKET_ELEMENTS: usize = 4 << 20;

/// Bytes each rank sent, by collective.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct SentBytes {
    pub all_reduce: u64,
    pub reduce_scatter: u64,
    pub all_gather: u64,
    pub broadcast: u64,
    /// Scalars for the metrics (loss, gradient norm), not part of the training traffic.
    pub metrics: u64,
    /// All-gathers of the whole model for checkpoints and evaluations under ZeRO 3, not
    /// part of the training traffic either.
    pub io: u64,
}

impl SentBytes {
    /// Gradients and parameters: everything but the broadcast at start-up and the metrics.
    pub fn training(&self) -> u64 {
        self.all_reduce + self.reduce_scatter + self.all_gather
    }
}

/// Where the collectives go.
pub enum Backend {
    /// One rank: every collective is the identity.
    Single,
    /// MPI processes (the world communicator of `mpirun` or `srun --mpi=pmix`).
    Mpi(mpi::topology::SimpleCommunicator),
    /// NCCL between GPUs for the buffers; MPI (when there is more than one rank) for the
    /// metrics' scalars, barriers and aborts.
    Nccl {
        nccl: crate::nccl::Communicator,
        mpi: Option<mpi::topology::SimpleCommunicator>,
    },
}

/// The collective layer (see the module doc).
pub struct Collective {
    backend: Backend,
    rank: usize,
    size: usize,
    pub sent: SentBytes,
    /// Wall-clock seconds spent in gradient and parameter collectives (waiting included).
    pub seconds: f64,
}

/// The MPI environment of this process, kept alive while collectives run (dropping it
/// finalises MPI).
pub struct MpiRuntime {
    pub universe: mpi::environment::Universe,
}

/// Whether this process was started by an MPI launcher (mpirun, or srun with PMIx), so that
/// initialising MPI joins a job instead of starting a singleton.
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"]
        .iter()
        .any(|k| std::env::var_os(k).is_some())
}

/// Initialises MPI when an MPI launcher started this process.
pub fn init_mpi() -> Result<Option<MpiRuntime>, TrainError> {
    if !launched_by_mpi() {
        return Ok(None);
    }
    match mpi::initialize() {
        Some(universe) => Ok(Some(MpiRuntime { universe })),
        None => Err(TrainError::Unsupported(
            "MPI was already initialised in this process".into(),
        )),
    }
}

fn check_flat(t: &Tensor, what: &str) -> Result<usize, TrainError> {
    if t.kind() != Kind::Float || !t.is_contiguous() {
        return Err(TrainError::Unsupported(format!(
            "{what}: collectives take contiguous fp32 buffers, got {:?}",
            t.kind()
        )));
    }
    Ok(t.numel())
}

fn check_cpu(t: &Tensor, what: &str) -> Result<usize, TrainError> {
    if t.kind() != Kind::Float || t.device() != Device::Cpu || !t.is_contiguous() {
        return Err(TrainError::Unsupported(format!(
            "{what}: MPI collectives take contiguous fp32 CPU buffers, got {:?} on {:?}",
            t.kind(),
            t.device()
        )));
    }
    Ok(t.numel())
}

/// The elements of a contiguous fp32 CPU tensor.
///
/// # Safety
/// The tensor must stay alive and unaliased by other writers while the slice is used.
unsafe fn as_slice(t: &Tensor) -> &[f32] {
    std::slice::from_raw_parts(t.data_ptr() as *const f32, t.numel())
}

/// # Safety
/// As [`as_slice`], and no other slice of the same tensor may be alive.
#[allow(clippy::mut_from_ref)]
unsafe fn as_slice_mut(t: &Tensor) -> &mut [f32] {
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel())
}

impl Collective {
    pub fn single() -> Collective {
        Collective {
            backend: Backend::Single,
            rank: 0,
            size: 1,
            sent: SentBytes::default(),
            seconds: 0.0,
        }
    }

    /// The world of an initialised MPI runtime.
    pub fn mpi(runtime: &MpiRuntime) -> Collective {
        use mpi::traits::Communicator;
        let world = runtime.universe.world();
        Collective {
            rank: world.rank() as usize,
            size: world.size() as usize,
            backend: Backend::Mpi(world),
            sent: SentBytes::default(),
            seconds: 0.0,
        }
    }

    /// NCCL on GPU `device` among the ranks of `runtime` (or alone): rank 0's unique id
    /// broadcast over MPI. Errors, rather than panics, when there is no GPU or no NCCL
    /// (`nccl::probe`).
    pub fn nccl(runtime: Option<&MpiRuntime>, device: usize) -> Result<Collective, TrainError> {
        use mpi::traits::{Communicator, Root};
        let world = runtime.map(|rt| rt.universe.world());
        let (rank, size) = world
            .as_ref()
            .map_or((0, 1), |w| (w.rank() as usize, w.size() as usize));
        let nccl = crate::nccl::Communicator::new(rank, size, device, |id| {
            if let Some(w) = &world {
                w.process_at_rank(0).broadcast_into(&mut id[..]);
            }
        })?;
        Ok(Collective {
            backend: Backend::Nccl { nccl, mpi: world },
            rank,
            size,
            sent: SentBytes::default(),
            seconds: 0.0,
        })
    }

    /// `single`, `mpi` or `nccl`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Single => "single",
            Backend::Mpi(_) => "mpi",
            Backend::Nccl { .. } => "nccl",
        }
    }

    /// The device the buffers must be on (CPU for MPI).
    pub fn device(&self) -> Device {
        match &self.backend {
            Backend::Nccl { nccl, .. } => nccl.device,
            _ => Device::Cpu,
        }
    }

    /// The NCCL communicator's GPU, or the first GPU for a rank alone.
    pub fn device_or_first_gpu(&self) -> Device {
        match &self.backend {
            Backend::Nccl { nccl, .. } => nccl.device,
            _ => Device::Cuda(0),
        }
    }

    /// The MPI communicator for scalars, barriers and aborts, when there is one.
    fn mpi_world(&self) -> Option<&mpi::topology::SimpleCommunicator> {
        match &self.backend {
            Backend::Mpi(w) => Some(w),
            Backend::Nccl { mpi, .. } => mpi.as_ref(),
            Backend::Single => None,
        }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// (n − 1) / n of `bytes`, the share a rank sends in one pass of a ring.
    fn ring(&self, bytes: usize) -> u64 {
        (bytes as u64 * (self.size as u64 - 1)) / self.size as u64
    }

    /// Sums `t` over the ranks, in place, bucket by bucket.
    pub fn all_reduce(&mut self, t: &Tensor) -> Result<(), TrainError> {
        let n = check_flat(t, "all-reduce")?;
        self.sent.all_reduce += 2 * self.ring(n * 4);
        let start = std::time::Instant::now();
        let r = self.all_reduce_uncounted(t, n);
        self.seconds += start.elapsed().as_secs_f64();
        r
    }

    fn all_reduce_uncounted(&mut self, t: &Tensor, n: usize) -> Result<(), TrainError> {
        let world = match &self.backend {
            Backend::Mpi(world) => world,
            Backend::Nccl { nccl, .. } => return nccl.all_reduce(t),
            Backend::Single => return Ok(()),
        };
        check_cpu(t, "all-reduce")?;
        use mpi::collective::SystemOperation;
        use mpi::traits::CommunicatorCollectives;
        // SAFETY: `t` is a contiguous fp32 CPU tensor owned by the caller for this call.
        let data = unsafe { as_slice_mut(t) };
        let mut recv = vec![0f32; BUCKET_ELEMENTS.min(n)];
        for chunk in data.chunks_mut(BUCKET_ELEMENTS) {
            let r = &mut recv[..chunk.len()];
            world.all_reduce_into(&chunk[..], r, SystemOperation::sum());
            chunk.copy_from_slice(r);
        }
        Ok(())
    }

    /// A scalar summed over the ranks, counted as metrics traffic.
    pub fn all_reduce_scalar(&mut self, value: f64) -> f64 {
        if self.mpi_world().is_none() {
            return value;
        }
        self.sent.metrics += 2 * self.ring(8);
        let world = self.mpi_world().expect("checked above");
        use mpi::collective::SystemOperation;
        use mpi::traits::CommunicatorCollectives;
        let mut out = 0f64;
        world.all_reduce_into(&value, &mut out, SystemOperation::sum());
        out
    }

    /// `output[i] = Σ_ranks input[rank·len + i]` for this rank's part: `input` holds n
    /// equal parts of `output`'s length, part r for rank r.
    pub fn reduce_scatter(&mut self, input: &Tensor, output: &Tensor) -> Result<(), TrainError> {
        let n_in = check_flat(input, "reduce-scatter input")?;
        let n_out = check_flat(output, "reduce-scatter output")?;
        if n_in != n_out * self.size {
            return Err(TrainError::Plan(format!(
                "reduce-scatter of {n_in} elements into {n_out} on {} ranks",
                self.size
            )));
        }
        self.sent.reduce_scatter += self.ring(n_in * 4);
        let start = std::time::Instant::now();
        let r = self.reduce_scatter_uncounted(input, output, n_out);
        self.seconds += start.elapsed().as_secs_f64();
        r
    }

    fn reduce_scatter_uncounted(
        &mut self,
        input: &Tensor,
        output: &Tensor,
        n_out: usize,
    ) -> Result<(), TrainError> {
        let world = match &self.backend {
            Backend::Mpi(world) => world,
            Backend::Nccl { nccl, .. } => return nccl.reduce_scatter(input, output),
            Backend::Single => {
                tch::no_grad(|| output.shallow_clone().copy_(input));
                return Ok(());
            }
        };
        check_cpu(input, "reduce-scatter input")?;
        check_cpu(output, "reduce-scatter output")?;
        use mpi::collective::SystemOperation;
        use mpi::traits::CommunicatorCollectives;
        // SAFETY: contiguous fp32 CPU tensors owned by the caller; input and output differ.
        let (src, dst) = unsafe { (as_slice(input), as_slice_mut(output)) };
        // Bucket k reduces elements [k·B, (k+1)·B) of every rank's part.
        let size = self.size;
        let mut send = Vec::new();
        let mut start = 0;
        while start < n_out {
            let len = BUCKET_ELEMENTS.min(n_out - start);
            send.clear();
            for r in 0..size {
                send.extend_from_slice(&src[r * n_out + start..r * n_out + start + len]);
            }
            world.reduce_scatter_block_into(
                &send[..],
                &mut dst[start..start + len],
                SystemOperation::sum(),
            );
            start += len;
        }
        Ok(())
    }

    /// Every rank's `input` concatenated in rank order into `output`.
    pub fn all_gather(&mut self, input: &Tensor, output: &Tensor) -> Result<(), TrainError> {
        let n_in = check_flat(input, "all-gather input")?;
        let n_out = check_flat(output, "all-gather output")?;
        if n_out != n_in * self.size {
            return Err(TrainError::Plan(format!(
                "all-gather of {n_in} elements into {n_out} on {} ranks",
                self.size
            )));
        }
        self.sent.all_gather += self.ring(n_out * 4);
        let start = std::time::Instant::now();
        let r = self.all_gather_uncounted(input, output, n_in);
        self.seconds += start.elapsed().as_secs_f64();
        r
    }

    /// [`Collective::all_gather`] for a checkpoint or an evaluation, counted in
    /// [`SentBytes::io`].
    pub fn all_gather_io(&mut self, input: &Tensor, output: &Tensor) -> Result<(), TrainError> {
        let (before, seconds) = (self.sent, self.seconds);
        self.all_gather(input, output)?;
        self.sent.io += self.sent.all_gather - before.all_gather;
        self.sent.all_gather = before.all_gather;
        self.seconds = seconds;
        Ok(())
    }

    fn all_gather_uncounted(
        &mut self,
        input: &Tensor,
        output: &Tensor,
        n_in: usize,
    ) -> Result<(), TrainError> {
        let world = match &self.backend {
            Backend::Mpi(world) => world,
            Backend::Nccl { nccl, .. } => return nccl.all_gather(input, output),
            Backend::Single => {
                tch::no_grad(|| output.shallow_clone().copy_(input));
                return Ok(());
            }
        };
        check_cpu(input, "all-gather input")?;
        check_cpu(output, "all-gather output")?;
        use mpi::traits::CommunicatorCollectives;
        // SAFETY: contiguous fp32 CPU tensors owned by the caller; input and output differ.
        let (src, dst) = unsafe { (as_slice(input), as_slice_mut(output)) };
        let size = self.size;
        let mut recv = Vec::new();
        let mut start = 0;
        while start < n_in {
            let len = BUCKET_ELEMENTS.min(n_in - start);
            recv.resize(len * size, 0f32);
            world.all_gather_into(&src[start..start + len], &mut recv[..]);
            for r in 0..size {
                dst[r * n_in + start..r * n_in + start + len]
                    .copy_from_slice(&recv[r * len..(r + 1) * len]);
            }
            start += len;
        }
        Ok(())
    }

    /// Rank `root`'s `t` on every rank, in place.
    pub fn broadcast(&mut self, t: &Tensor, root: usize) -> Result<(), TrainError> {
        let n = check_flat(t, "broadcast")?;
        self.sent.broadcast += 2 * self.ring(n * 4);
        let world = match &self.backend {
            Backend::Mpi(world) => world,
            Backend::Nccl { nccl, .. } => return nccl.broadcast(t, root),
            Backend::Single => return Ok(()),
        };
        check_cpu(t, "broadcast")?;
        use mpi::traits::{Communicator, Root};
        // SAFETY: a contiguous fp32 CPU tensor owned by the caller for this call.
        let data = unsafe { as_slice_mut(t) };
        let root = world.process_at_rank(root as i32);
        for chunk in data.chunks_mut(BUCKET_ELEMENTS) {
            root.broadcast_into(chunk);
        }
        Ok(())
    }

    /// Waits for every rank.
    pub fn barrier(&self) {
        if let Some(world) = self.mpi_world() {
            use mpi::traits::CommunicatorCollectives;
            world.barrier();
        }
    }

    /// Ends every rank of the job with `code` (MPI_Abort): a failing rank calls it so the
    /// others stop instead of waiting in a collective.
    pub fn abort(&self, code: i32) -> ! {
        if let Some(world) = self.mpi_world() {
            use mpi::traits::Communicator;
            world.abort(code)
        }
        std::process::exit(code)
    }
}
