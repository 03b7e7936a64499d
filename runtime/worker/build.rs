//! Gives kiln-worker an rpath to the torch wheel's `torch/lib` (kiln-torch-build).

fn main() {
    kiln_torch_build::link_rpath();
}
