//! Exits with a non-zero code (default 3, or the first argument), or traps with `panic`.
//!
//! The pod shows `Error` with the exit code; with `panic` it shows the trap message.

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "3".into());
    if arg == "panic" {
        eprintln!("about to panic");
        panic!("crasher was asked to panic");
    }
    let code: i32 = arg.parse().unwrap_or(3);
    println!("crasher: exiting with code {code}");
    eprintln!("crasher: something went wrong (on purpose)");
    std::process::exit(code);
}
