//! The server under test, as every scenario takes it: where to connect, what
//! to call it in the result, and which process to watch.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{Map, Value, json};

/// Command-line options naming the server under test.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The server's WebSocket URL, `ws://HOST:PORT/PATH` (dev auth by `?token=`).
    #[arg(long)]
    pub url: String,
    /// The server's name in the result line.
    #[arg(long, default_value = "server")]
    pub label: String,
    /// The server's process id, to report its CPU and memory use.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Spread connections over this many source addresses, 127.0.0.1 upwards,
    /// so that many connections do not run out of one address's ports.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_addrs: u8,
}

impl ServerArgs {
    /// The URL's `IP:PORT` and path.
    fn split_url(&self) -> (&str, &str) {
        let rest = self.url.strip_prefix("ws://").expect("the URL starts with ws://");
        rest.find('/').map_or((rest, "/"), |slash| rest.split_at(slash))
    }

    /// The TCP address in the URL.
    pub fn socket_addr(&self) -> SocketAddr {
        let authority = self.split_url().0;
        authority
            .parse()
            .unwrap_or_else(|e| panic!("{authority} is not an IP:PORT address: {e}"))
    }

    /// The path in the URL.
    pub fn path(&self) -> &str {
        self.split_url().1
    }

    /// The source address of connection number `n`.
    pub fn source_addr(&self, n: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, 1 + (n % usize::from(self.source_addrs)) as u8)
    }

    /// The start of a result line: scenario, server label and parameters.
    pub fn result(&self, scenario: &str, params: Value) -> Map<String, Value> {
        let mut line = Map::new();
        line.insert("scenario".into(), json!(scenario));
        line.insert("server".into(), json!(self.label));
        line.insert("params".into(), params);
        line
    }
}
