//! Prints a greeting, its environment's `GREETING`, and a file from a mounted volume.
//!
//! Shows what a WASI guest sees in a Skiff pod: args, env, only the mounted directories.

use std::fs;

fn main() {
    println!("Hello from a Skiff wasm pod!");
    let args: Vec<String> = std::env::args().collect();
    println!("args: {args:?}");
    match std::env::var("GREETING") {
        Ok(greeting) => println!("GREETING={greeting}"),
        Err(_) => println!("GREETING is not set"),
    }
    let path = std::env::var("MESSAGE_FILE").unwrap_or_else(|_| "/config/message.txt".into());
    match fs::read_to_string(&path) {
        Ok(message) => println!("{path}: {}", message.trim_end()),
        Err(error) => eprintln!("cannot read {path}: {error}"),
    }
    // Nothing but the mounts is visible: the host's /etc does not exist for the guest.
    match fs::read_to_string("/etc/hostname") {
        Ok(_) => println!("host file system: VISIBLE (unexpected)"),
        Err(_) => println!("host file system: not visible"),
    }
}
