//! `timed`: the TIME server binary.

fn main() {
    inetsvc_runtime::main::<inetsvc_time::Time>()
}
