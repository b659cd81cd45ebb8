//! `compress-rules FACTOR FROM TO`: the rule files of folder FROM written to folder TO with
//! every window and `for` divided by FACTOR ([`inetsvc_testkit::prometheus::compress`]),
//! for the compose game-day test, whose Prometheus runs in a container.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [factor, from, to] = args.as_slice() else {
        eprintln!("usage: compress-rules FACTOR FROM TO");
        std::process::exit(2);
    };
    let Ok(factor) = factor.parse::<u64>() else {
        eprintln!("compress-rules: FACTOR `{factor}` is not a whole number");
        std::process::exit(2);
    };
    let run = || -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let path = entry?.path();
            let text = std::fs::read_to_string(&path)?;
            let name = path.file_name().unwrap_or_default();
            let compressed = inetsvc_testkit::prometheus::compress(&text, factor.max(1));
            std::fs::write(Path::new(to).join(name), compressed)?;
        }
        Ok(())
    };
    if let Err(error) = run() {
        eprintln!("compress-rules: {error}");
        std::process::exit(1);
    }
}
