//! NCCL for collectives between GPUs, through cudarc's bindings loaded at run time (the
//! build needs no CUDA): finding the library, setting up a communicator whose unique id
//! rank 0 broadcasts over MPI, and the four collectives on CUDA tensors in place.
//!
//! cudarc's loader panics when a library is missing, so [`probe`] checks for a GPU and for
//! the libraries first and returns an error that says what to do. The NCCL of PyTorch's
//! wheel (`nvidia/nccl/lib/libnccl.so.2`) is not among the names cudarc tries (`libnccl.so`,
//! `libnccl.so.13`, …): [`nccl_link_dir`] makes a directory with a `libnccl.so` link to it,
//! which must be on `LD_LIBRARY_PATH` when the process starts (the dynamic loader reads
//! that variable once); kiln-worker re-executes itself with it ([`reexec_with_nccl`]).

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use cudarc::nccl::sys as nccl;
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;

/// Set in the environment of a process that [`reexec_with_nccl`] started, so it does not
/// loop.
pub const REEXEC_ENV: &str = "KILN_NCCL_REEXEC";

/// Whether cudarc finds an NCCL library under one of its names (no panic).
pub fn library_present() -> bool {
    // SAFETY: only tries to open libraries by name.
    unsafe { nccl::is_culib_present() }
}

/// The loaded NCCL's version as `major.minor.patch`, when cudarc finds the library (no GPU
/// needed).
pub fn version() -> Option<String> {
    if !library_present() {
        return None;
    }
    let v = cudarc::nccl::result::get_nccl_version().ok()?;
    // NCCL_VERSION_CODE = major·10000 + minor·100 + patch since 2.9.
    Some(format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100))
}

/// The directory of the libtorch this process runs with (`…/site-packages/torch/lib`),
/// read from the process's own mappings.
fn torch_lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// The NCCL library that PyTorch's wheel ships beside libtorch, if there is one.
pub fn wheel_nccl() -> Option<PathBuf> {
    let site = torch_lib_dir()?.parent()?.parent()?.to_path_buf();
    let lib = site.join("nvidia/nccl/lib/libnccl.so.2");
    lib.exists().then_some(lib)
}

/// A directory holding `libnccl.so` → `lib`, under the system's temporary directory,
/// named by the user id so that users do not share it.
pub fn nccl_link_dir(lib: &Path) -> Result<PathBuf, TrainError> {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("kiln-nccl-{uid}"));
    std::fs::create_dir_all(&dir).map_err(crate::error::io_at(&dir))?;
    let link = dir.join("libnccl.so");
    if std::fs::read_link(&link).ok().as_deref() != Some(lib) {
        let tmp = dir.join(format!(".libnccl.so.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(lib, &tmp).map_err(crate::error::io_at(&tmp))?;
        std::fs::rename(&tmp, &link).map_err(crate::error::io_at(&link))?;
    }
    Ok(dir)
}

/// When NCCL is wanted but cudarc cannot find it and the wheel has one: re-executes this
/// program with a link to the wheel's library on `LD_LIBRARY_PATH` (before MPI starts:
/// the process keeps its id and environment, so mpirun and srun see the same rank). Returns
/// only when there is nothing to do or it cannot help; [`probe`] then says what is missing.
pub fn reexec_with_nccl() {
    use std::os::unix::process::CommandExt;
    if library_present() || std::env::var_os(REEXEC_ENV).is_some() {
        return;
    }
    let Some(lib) = wheel_nccl() else { return };
    let Ok(dir) = nccl_link_dir(&lib) else { return };
    let mut path = dir.into_os_string();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        path.push(":");
        path.push(old);
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("LD_LIBRARY_PATH", path)
        .env(REEXEC_ENV, "1")
        .exec();
    eprintln!("warning: could not re-execute with NCCL on LD_LIBRARY_PATH: {err}");
}

/// Checks that NCCL can run here: a CUDA GPU that libtorch sees, the CUDA driver library
/// and an NCCL library cudarc can load. The error names what is missing and the fix.
pub fn probe() -> Result<(), TrainError> {
    if !tch::Cuda::is_available() {
        let nccl = match version() {
            Some(v) => format!("NCCL {v} is loaded"),
            None => "no NCCL library was found either".into(),
        };
        return Err(TrainError::Unsupported(format!(
            "the NCCL backend needs an NVIDIA GPU, and libtorch sees none here ({nccl}): use the MPI backend on CPUs (`--backend mpi`), or check the driver and that LD_LIBRARY_PATH reaches torch/lib"
        )));
    }
    // SAFETY: only tries to open libraries by name.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(TrainError::Unsupported(
            "the NCCL backend needs the CUDA driver library (libcuda.so.1), which was not found: install the NVIDIA driver or put its directory on LD_LIBRARY_PATH".into(),
        ));
    }
    if !library_present() {
        let hint = match wheel_nccl() {
            Some(lib) => format!(
                "PyTorch's wheel has {} but cudarc looks for libnccl.so: start the program with LD_LIBRARY_PATH including a directory that links libnccl.so to it (kiln-worker does this itself unless {REEXEC_ENV} is set)",
                lib.display()
            ),
            None => "install NCCL (PyTorch's CUDA wheel ships it as nvidia-nccl) and put the directory of libnccl.so on LD_LIBRARY_PATH".into(),
        };
        return Err(TrainError::Unsupported(format!(
            "no NCCL library found: {hint}"
        )));
    }
    Ok(())
}

/// An NCCL communicator of this process's rank on its GPU.
pub struct Communicator {
    comm: nccl::ncclComm_t,
    pub device: Device,
}

// The communicator is used from one thread at a time (the trainer's).
unsafe impl Send for Communicator {}

fn nccl_error(what: &str, e: cudarc::nccl::result::NcclError) -> TrainError {
    TrainError::Torch(format!("NCCL {what}: {e:?}"))
}

fn driver_error(what: &str, e: cudarc::driver::DriverError) -> TrainError {
    TrainError::Torch(format!("CUDA {what}: {e:?}"))
}

impl Communicator {
    /// Joins the communicator of `size` ranks as `rank` on GPU `device` (made current for
    /// this thread first, as NCCL binds a communicator to the current device).
    /// `share_id(bytes)` gives every rank rank 0's unique id (an MPI broadcast; the
    /// identity on one rank).
    pub fn new(
        rank: usize,
        size: usize,
        device: usize,
        share_id: impl FnOnce(&mut [u8; 128]),
    ) -> Result<Communicator, TrainError> {
        probe()?;
        use cudarc::driver::result as cu;
        cu::init().map_err(|e| driver_error("init", e))?;
        let dev = cu::device::get(device as i32).map_err(|e| driver_error("device", e))?;
        // SAFETY: a device the driver just returned; its primary context is libtorch's too.
        unsafe {
            let ctx = cu::primary_ctx::retain(dev).map_err(|e| driver_error("context", e))?;
            cu::ctx::set_current(ctx).map_err(|e| driver_error("context", e))?;
        }
        let mut id = [0u8; 128];
        if rank == 0 {
            let unique = cudarc::nccl::result::get_uniqueid().map_err(|e| nccl_error("id", e))?;
            for (b, c) in id.iter_mut().zip(unique.internal) {
                *b = c as u8;
            }
        }
        share_id(&mut id);
        let mut unique = nccl::ncclUniqueId { internal: [0; 128] };
        for (c, b) in unique.internal.iter_mut().zip(id) {
            *c = b as std::ffi::c_char;
        }
        let mut comm = std::ptr::null_mut();
        // SAFETY: `comm` receives the new communicator; every rank passes the same id.
        unsafe {
            cudarc::nccl::result::comm_init_rank(&mut comm, size as i32, unique, rank as i32)
                .map_err(|e| nccl_error("init", e))?;
        }
        Ok(Communicator {
            comm,
            device: Device::Cuda(device),
        })
    }

    fn check(&self, t: &Tensor, what: &str) -> Result<usize, TrainError> {
        if t.kind() != Kind::Float || t.device() != self.device || !t.is_contiguous() {
            return Err(TrainError::Unsupported(format!(
                "{what}: NCCL collectives here take contiguous fp32 tensors on {:?}, got {:?} on {:?}",
                self.device,
                t.kind(),
                t.device()
            )));
        }
        Ok(t.numel())
    }

    /// Waits for the collective (on the default stream, after libtorch's work there).
    fn synchronize(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Sums `t` over the ranks, in place.
    pub fn all_reduce(&self, t: &Tensor) -> Result<(), TrainError> {
        let n = self.check(t, "all-reduce")?;
        let p = t.data_ptr();
        // SAFETY: a contiguous fp32 buffer of n elements on this communicator's GPU; the
        // default stream orders it after the kernels that wrote it.
        unsafe {
            cudarc::nccl::result::all_reduce(
                p as *const c_void,
                p,
                n,
                nccl::ncclDataType_t::ncclFloat32,
                nccl::ncclRedOp_t::ncclSum,
                self.comm,
                std::ptr::null_mut(),
            )
            .map_err(|e| nccl_error("all-reduce", e))?;
        }
        self.synchronize();
        Ok(())
    }

    /// `output` = this rank's part of the sum of every rank's `input` (n parts).
    pub fn reduce_scatter(&self, input: &Tensor, output: &Tensor) -> Result<(), TrainError> {
        self.check(input, "reduce-scatter input")?;
        let n_out = self.check(output, "reduce-scatter output")?;
        // SAFETY: as all_reduce; the caller checked input = n_out × ranks elements.
        unsafe {
            cudarc::nccl::result::reduce_scatter(
                input.data_ptr() as *const c_void,
                output.data_ptr(),
                n_out,
                nccl::ncclDataType_t::ncclFloat32,
                nccl::ncclRedOp_t::ncclSum,
                self.comm,
                std::ptr::null_mut(),
            )
            .map_err(|e| nccl_error("reduce-scatter", e))?;
        }
        self.synchronize();
        Ok(())
    }

    /// Every rank's `input` concatenated in rank order into `output`.
    pub fn all_gather(&self, input: &Tensor, output: &Tensor) -> Result<(), TrainError> {
        let n_in = self.check(input, "all-gather input")?;
        self.check(output, "all-gather output")?;
        // SAFETY: as all_reduce; the caller checked output = n_in × ranks elements.
        unsafe {
            cudarc::nccl::result::all_gather(
                input.data_ptr() as *const c_void,
                output.data_ptr(),
                n_in,
                nccl::ncclDataType_t::ncclFloat32,
                self.comm,
                std::ptr::null_mut(),
            )
            .map_err(|e| nccl_error("all-gather", e))?;
        }
        self.synchronize();
        Ok(())
    }

    /// Rank `root`'s `t` on every rank, in place.
    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<(), TrainError> {
        let n = self.check(t, "broadcast")?;
        let p = t.data_ptr();
        // SAFETY: as all_reduce.
        unsafe {
            cudarc::nccl::result::broadcast(
                p as *const c_void,
                p,
                n,
                nccl::ncclDataType_t::ncclFloat32,
                root as i32,
                self.comm,
                std::ptr::null_mut(),
            )
            .map_err(|e| nccl_error("broadcast", e))?;
        }
        self.synchronize();
        Ok(())
    }
}

impl Drop for Communicator {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialised and is not used after this.
        unsafe {
            let _ = cudarc::nccl::result::comm_destroy(self.comm);
        }
    }
}
