//! Two peers from one schema: the server calls back the client that calls it, and the client
//! streams live readings that the server plays out through a jitter buffer.

use echostream_runtime::tls::{ClientTls, ServerTls};
use echostream_runtime::{Client, Played, Server, Session, Status, StreamInfo, async_trait};

#[allow(dead_code)] // a binary uses only part of the generated clients and constants
mod schema {
    echostream_runtime::include_schema!("hello.v1");
}
use schema::{Greet, Greeting, Reading};

struct Hub;

#[async_trait]
impl schema::Hub for Hub {
    async fn greet(&self, session: &Session, request: Greet) -> Result<Greeting, Status> {
        // Call back the client that is calling us, on the same connection.
        let device = schema::DeviceClient::new(session.clone());
        let pong = device.ping(Greet { name: "hub".into() }).await?;
        Ok(Greeting {
            text: format!("hello {} ({})", request.name, pong.text),
        })
    }

    async fn temperature(&self, _session: &Session, _stream: &StreamInfo, frame: Played<Reading>) {
        // In sequence order, at playout time; `lost_before` says how many were lost just before.
        println!(
            "#{} {:.1} °C (lost before: {})",
            frame.seq, frame.payload.celsius, frame.lost_before
        );
    }
}

struct Device;

#[async_trait]
impl schema::Device for Device {
    async fn ping(&self, _session: &Session, request: Greet) -> Result<Greeting, Status> {
        Ok(Greeting {
            text: format!("pong to {}", request.name),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::builder()
        .tls(ServerTls::self_signed(["localhost"])?)
        .service(schema::HubServer::new(Hub))
        .bind("127.0.0.1:0")
        .await?;

    let client = Client::builder()
        .tls(ClientTls::pinned(server.fingerprint())) // trust exactly that certificate
        .service(schema::DeviceServer::new(Device))
        .build()
        .await?;
    let session = client.connect(server.local_addr(), "localhost").await?;

    let hub = schema::HubClient::new(session.clone());
    println!("{}", hub.greet(Greet { name: "ann".into() }).await?.text);

    let feed = hub.temperature().await?; // a typed datagram stream
    for i in 0..10 {
        feed.send(Reading {
            celsius: 20.0 + f64::from(i) / 10.0,
        })
        .await?;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    feed.finish();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    println!("rtt {:?}", session.rtt());
    if let Some(clock) = session.clock_sync() {
        println!("clock offset {} µs", clock.offset_micros);
    }
    Ok(())
}
