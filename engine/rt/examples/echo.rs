//! An echo server on the io_uring backend: every accept, receive, send and close goes through the
//! ring. `cargo run --release -p strata-rt --example echo -- [ADDRESS] [--cores N]`, then e.g.
//! `printf 'hello\n' | nc -q1 127.0.0.1 7007`.

use std::net::SocketAddr;
use std::process::ExitCode;
use strata_rt::uring::{run_cores, UringOptions};
use strata_rt::{NodeId, Runtime, Stream};

async fn serve(stream: Stream) {
    let mut buf = vec![0; 64 << 10];
    loop {
        let (read, returned) = stream.read(buf).await;
        buf = returned;
        let count = match read {
            Ok(0) | Err(_) => return,
            Ok(count) => count,
        };
        let (written, returned) = stream.write_prefix(buf, count).await;
        buf = returned;
        if written.is_err() {
            return;
        }
    }
}

async fn listen(rt: Runtime, address: SocketAddr, core: usize) {
    let listener = match rt.net().listen(address) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("core {core}: cannot listen on {address}: {error}");
            return;
        }
    };
    println!("core {core}: io_uring echo server listening on {}", listener.local_address());
    while let Ok((stream, peer)) = listener.accept().await {
        println!("core {core}: connection from {peer}");
        drop(rt.spawn(serve(stream)));
    }
}

fn main() -> ExitCode {
    let mut arguments = std::env::args().skip(1);
    let mut address: SocketAddr = "127.0.0.1:7007".parse().expect("default address");
    let mut cores = 1;
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--cores" => cores = arguments.next().and_then(|n| n.parse().ok()).unwrap_or(1),
            text => match text.parse() {
                Ok(parsed) => address = parsed,
                Err(_) => {
                    eprintln!("usage: echo [ADDRESS] [--cores N]");
                    return ExitCode::FAILURE;
                }
            },
        }
    }
    if let Err(error) = strata_rt::uring::probe() {
        eprintln!("error: {error}");
        eprintln!("(io_uring may be disabled: see /proc/sys/kernel/io_uring_disabled, or a seccomp profile)");
        return ExitCode::FAILURE;
    }
    // One listener per core on the same port would need SO_REUSEPORT; cores after the first get
    // the following ports.
    let data_dir = std::env::temp_dir().join("strata-echo");
    let options = UringOptions { node_id: NodeId(0), data_dir, peers: None };
    let outcome = run_cores(cores, &options, |rt, core| {
        let core_address = SocketAddr::new(address.ip(), address.port() + core as u16);
        listen(rt, core_address, core)
    });
    match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
