use std::net::{Ipv4Addr, TcpListener};

/// The lowest port handed out; below it live the well-known and commonly configured ports.
const LOWEST: u16 = 10_000;

/// A port of 127.0.0.1 that nothing listens on right now.
///
/// Chosen below the kernel's ephemeral range, unlike a bind to port 0: outgoing connections take
/// their local port from that range, so one of them could hold the port of a server a test has
/// paused and stop it from coming back on the same port.
pub fn free_port() -> u16 {
    let ephemeral_low = ephemeral_range_start();
    if ephemeral_low > LOWEST + 1_000 {
        for _ in 0..200 {
            let port = rand::random_range(LOWEST..ephemeral_low);
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("no free port on 127.0.0.1: {error}"))
}

fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}
