//! `daytimed`: the DAYTIME server binary.

fn main() {
    inetsvc_runtime::main::<inetsvc_daytime::Daytime>()
}
