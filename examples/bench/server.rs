//! The server under test, as every scenario takes it: where to connect, what
//! to call it in the result, and which process to watch.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{Map, Value, json};

/// Command-line options naming the server under test.
#[derive(clap::Args, Clone)]
pub struct ServerArgs {
    /// The server's WebSocket URL, `ws://HOST:PORT/PATH` (dev auth by
    /// `?token=`). Repeated for the nodes of a cluster: connection `n` goes
    /// to the `n % count`th, so the two users of a pair are on two nodes.
    #[arg(long, required = true)]
    pub url: Vec<String>,
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
    /// The `IP:PORT` and path of connection `n`'s URL.
    fn split_url(&self, n: usize) -> (&str, &str) {
        let url = &self.url[n % self.url.len()];
        let rest = url.strip_prefix("ws://").expect("the URL starts with ws://");
        rest.find('/').map_or((rest, "/"), |slash| rest.split_at(slash))
    }

    /// The TCP address connection `n` connects to.
    pub fn socket_addr(&self, n: usize) -> SocketAddr {
        let authority = self.split_url(n).0;
        authority
            .parse()
            .unwrap_or_else(|e| panic!("{authority} is not an IP:PORT address: {e}"))
    }

    /// The path of connection `n`'s URL.
    pub fn path(&self, n: usize) -> &str {
        self.split_url(n).1
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
