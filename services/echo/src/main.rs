//! `echod`: the ECHO server binary.

fn main() {
    inetsvc_runtime::main::<inetsvc_echo::Echo>()
}
