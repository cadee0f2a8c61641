//! LAN discovery over real mDNS, inside private network namespaces so that no multicast packet
//! ever leaves this machine.
//!
//! Each `*_in_private_netns` test re-executes this test binary under `unshare --net`, running
//! only its `child_*` counterpart with `CHILD_ENV` set. The child refuses to run unless it sees
//! a fresh namespace (nothing but `lo`), then builds its own link: a veth pair `v0`/`v1` with
//! private addresses on `v0`. Without `CHILD_ENV`, a `child_*` test returns at once, so a normal
//! run executes them only as children.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use echostream_runtime::discovery::{
    Advertisement, Browser, Discovered, DiscoveryError, DiscoveryEvent, Filter, TxtIssue, discover,
};
use echostream_runtime::tls::Fingerprint;

/// Set in the environment of a child running inside its namespace.
const CHILD_ENV: &str = "ECHOSTREAM_TEST_NETNS_CHILD";
/// The longest a child may run, namespace set-up included.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// The longest any single discovery step may take (probing alone takes about a second).
const STEP: Duration = Duration::from_secs(10);

const V0_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const V0_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
const PROTOCOL: &str = "echostream/1";

// ---------------------------------------------------------------------------------------------
// Parent side: run one child test in a fresh network namespace.

/// Runs the test `child` of this binary under `unshare --net`, failing with the child's output
/// (or with why no namespace could be made) unless exactly that test passed.
fn run_in_private_netns(child: &str) {
    let exe = std::env::current_exe().expect("path of the running test binary");
    let mut process = Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(&exe)
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `unshare` ({e}): these tests need util-linux's `unshare --net` to \
                 create a private network namespace, so that no multicast leaves this machine"
            )
        });
    let started = Instant::now();
    while process.try_wait().expect("waiting for the child").is_none() {
        if started.elapsed() > CHILD_DEADLINE {
            let _ = process.kill();
            let output = process.wait_with_output().expect("child output");
            panic!(
                "{child} did not finish within {CHILD_DEADLINE:?}\n--- stdout\n{}\n--- stderr\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = process.wait_with_output().expect("child output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.starts_with("unshare:") {
        panic!(
            "cannot create a private network namespace: {}\nThese tests advertise over mDNS \
             multicast and only do so inside a namespace of their own; run them as root (or with \
             CAP_SYS_ADMIN), where `unshare --net` works.",
            stderr.trim()
        );
    }
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{child} failed in its namespace ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}

#[test]
fn found_with_everything_advertised_then_lost_on_drop_in_private_netns() {
    run_in_private_netns("child_found_with_everything_advertised_then_lost_on_drop");
}

#[test]
fn explicit_addresses_on_one_interface_and_explicit_stops_in_private_netns() {
    run_in_private_netns("child_explicit_addresses_on_one_interface_and_explicit_stops");
}

#[test]
fn malformed_txt_from_the_network_in_private_netns() {
    run_in_private_netns("child_malformed_txt_from_the_network");
}

#[test]
fn discover_matches_and_times_out_in_private_netns() {
    run_in_private_netns("child_discover_matches_and_times_out");
}

#[test]
fn name_conflict_renames_the_later_advertiser_in_private_netns() {
    run_in_private_netns("child_name_conflict_renames_the_later_advertiser");
}

// ---------------------------------------------------------------------------------------------
// Child side: inside the namespace.

/// Whether this process is a child in its namespace; sets the namespace's link up if so.
fn in_child_netns() -> bool {
    if std::env::var_os(CHILD_ENV).is_none() {
        return false;
    }
    let links = sh("ip -o link show");
    assert!(
        links.lines().count() == 1 && links.contains(": lo:"),
        "refusing to send multicast: {CHILD_ENV} is set but this is not a fresh network \
         namespace:\n{links}"
    );
    // No duplicate address detection (addresses usable at once); no IPv6 at all on v1, so
    // that only v0 carries addresses and v1 is merely the other end of the cable.
    std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0").expect("disable DAD");
    std::fs::write("/proc/sys/net/ipv6/conf/all/accept_dad", "0").expect("disable DAD");
    sh("ip link set lo up");
    sh("ip link add v0 type veth peer name v1");
    std::fs::write("/proc/sys/net/ipv6/conf/v1/disable_ipv6", "1").expect("no IPv6 on v1");
    sh(&format!("ip addr add {V0_V4}/24 dev v0"));
    sh(&format!("ip -6 addr add {V0_V6}/64 dev v0 nodad"));
    sh("ip link set v1 up");
    sh("ip link set v0 up");
    // Where this test's own raw packets to the mDNS group go.
    sh("ip route add 224.0.0.0/4 dev v0");
    true
}

/// Runs a shell command, panicking with its output if it fails.
fn sh(command: &str) -> String {
    let output = Command::new("sh")
        .args(["-c", command])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// v0's IPv6 link-local address and its interface index.
fn v0_link_local() -> (Ipv6Addr, u32) {
    let out = sh("ip -6 -o addr show dev v0 scope link");
    let addr = out
        .split_whitespace()
        .skip_while(|word| *word != "inet6")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("no link-local address on v0: {out:?}"));
    // "3: v0@v1: <...": /sys still shows the parent namespace, `ip` does not.
    let link = sh("ip -o link show v0");
    let index = link
        .split(':')
        .next()
        .and_then(|index| index.trim().parse().ok())
        .unwrap_or_else(|| panic!("no index in {link:?}"));
    (addr, index)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A browser and what its events have said so far, as an application keeps it.
struct Watched {
    browser: Browser,
    /// Instance name → latest `Found`, without the ones since `Lost`.
    seen: BTreeMap<String, Discovered>,
}

impl Watched {
    fn new(browser: Browser) -> Watched {
        Watched {
            browser,
            seen: BTreeMap::new(),
        }
    }

    /// Takes events until `done` holds for what they said, within `STEP`.
    async fn until(&mut self, what: &str, done: impl Fn(&BTreeMap<String, Discovered>) -> bool) {
        let wait = async {
            while !done(&self.seen) {
                match self.browser.next().await {
                    Some(DiscoveryEvent::Found(found)) => {
                        self.seen.insert(found.instance.clone(), found);
                    }
                    Some(DiscoveryEvent::Lost(instance)) => {
                        assert!(
                            self.seen.remove(&instance).is_some(),
                            "Lost({instance:?}) was never found"
                        );
                    }
                    None => panic!("browser stopped while waiting for {what}"),
                }
            }
        };
        if tokio::time::timeout(STEP, wait).await.is_err() {
            panic!(
                "no {what} within {STEP:?}; events said {:#?}; present: {:#?}",
                self.seen,
                self.browser.endpoints()
            );
        }
    }

    /// `instance` once `accept` holds for it (skipping earlier, partial resolutions).
    async fn found_where(
        &mut self,
        instance: &str,
        accept: impl Fn(&Discovered) -> bool,
    ) -> Discovered {
        self.until(&format!("acceptable {instance:?}"), |seen| {
            seen.get(instance).is_some_and(&accept)
        })
        .await;
        self.seen[instance].clone()
    }

    /// `instance` as first found.
    async fn found(&mut self, instance: &str) -> Discovered {
        self.found_where(instance, |_| true).await
    }

    /// Waits for `Lost(instance)`, which must have been found.
    async fn lost(&mut self, instance: &str) {
        assert!(
            self.seen.contains_key(instance),
            "{instance:?} was never found"
        );
        self.until(&format!("loss of {instance:?}"), |seen| {
            !seen.contains_key(instance)
        })
        .await;
        assert!(
            !self
                .browser
                .endpoints()
                .iter()
                .any(|d| d.instance == instance),
            "{instance:?} still present"
        );
    }
}

fn fingerprint(seed: u8) -> Fingerprint {
    Fingerprint::from([seed; 32])
}

#[test]
fn child_found_with_everything_advertised_then_lost_on_drop() {
    if !in_child_netns() {
        return;
    }
    let (link_local, v0_index) = v0_link_local();
    runtime().block_on(async {
        let mut browser = Watched::new(Browser::new().expect("browser"));
        let advertiser = Advertisement::new("Ann's Game. Room 1", PROTOCOL, 4433)
            .fingerprint(fingerprint(0xab))
            .property("Map", "harbour")
            .property("players", "3/8")
            .property("map", "dunes")
            .start()
            .expect("advertise");
        assert_eq!(advertiser.instance(), "Ann's Game. Room 1");
        assert_eq!(advertiser.port(), 4433);

        // Every non-loopback address of the namespace (addresses may resolve one record at a
        // time, hence the wait for all), IPv4 first, link-local IPv6 last and scoped to its
        // interface; never a loopback one.
        let v4: SocketAddr = (V0_V4, 4433).into();
        let v6: SocketAddr = (V0_V6, 4433).into();
        let ll = SocketAddr::V6(std::net::SocketAddrV6::new(link_local, 4433, 0, v0_index));
        let found = browser
            .found_where("Ann's Game. Room 1", |d| d.addrs.len() == 3)
            .await;
        assert_eq!(found.addrs, vec![v4, v6, ll]);
        assert_eq!(found.port, 4433);
        assert_eq!(found.protocol.as_deref(), Some(PROTOCOL));
        assert_eq!(found.fingerprint, Some(fingerprint(0xab)));
        assert_eq!(
            found.property("MAP"),
            Some("dunes"),
            "last value of a key wins"
        );
        assert_eq!(found.property("players"), Some("3/8"));
        assert_eq!(found.properties.len(), 2, "{:?}", found.properties);
        assert!(found.txt_issues.is_empty(), "{:?}", found.txt_issues);
        assert_eq!(found.host, "ann-s-game-room-1.local.");
        assert_eq!(browser.browser.endpoints(), vec![found.clone()]);

        // Live updates of the TXT record reach the browser as a new Found.
        let mut advertiser = advertiser;
        advertiser.set_property("players", "4/8").expect("update");
        let updated = browser
            .found_where("Ann's Game. Room 1", |d| {
                d.property("players") == Some("4/8")
            })
            .await;
        assert_eq!(updated.property("map"), Some("dunes"));
        assert_eq!(updated.fingerprint, Some(fingerprint(0xab)));
        advertiser.remove_property("MAP").expect("removal");
        browser
            .found_where("Ann's Game. Room 1", |d| d.property("map").is_none())
            .await;
        // A refused update changes nothing.
        let refused = advertiser
            .set_property("fp", "00")
            .expect_err("reserved key");
        assert!(
            matches!(&refused, DiscoveryError::InvalidProperty { key, .. } if key == "fp"),
            "{refused:?}"
        );

        drop(advertiser);
        browser.lost("Ann's Game. Room 1").await;
        assert_eq!(browser.browser.endpoints(), vec![]);
    });
}

#[test]
fn child_explicit_addresses_on_one_interface_and_explicit_stops() {
    if !in_child_netns() {
        return;
    }
    runtime().block_on(async {
        let mut browser =
            Watched::new(Browser::builder().interface("v0").start().expect("browser"));
        let sync_stopped = Advertisement::new("sensor-1", PROTOCOL, 5000)
            .address(IpAddr::V4(V0_V4))
            .interface("v0")
            .host_name("sensor-one.local")
            .start()
            .expect("advertise sensor-1");
        let async_stopped = Advertisement::new("sensor-2", PROTOCOL, 5001)
            .addresses([IpAddr::V6(V0_V6), IpAddr::V6(V0_V6)])
            .interface("v0")
            .start()
            .expect("advertise sensor-2");

        let one = browser.found("sensor-1").await;
        assert_eq!(one.addrs, vec![SocketAddr::from((V0_V4, 5000))]);
        assert_eq!(one.host, "sensor-one.local.");
        assert_eq!(one.fingerprint, None, "none was advertised");
        assert!(one.txt_issues.is_empty(), "{:?}", one.txt_issues);
        let two = browser.found("sensor-2").await;
        assert_eq!(two.addrs, vec![SocketAddr::from((V0_V6, 5001))]);

        // The blocking stop runs off the runtime's thread, as blocking code should.
        tokio::task::spawn_blocking(move || sync_stopped.stop())
            .await
            .expect("stop task")
            .expect("stop");
        browser.lost("sensor-1").await;
        async_stopped.stop_async().await.expect("stop_async");
        browser.lost("sensor-2").await;
    });
}

#[test]
fn child_discover_matches_and_times_out() {
    if !in_child_netns() {
        return;
    }
    runtime().block_on(async {
        let _lamp = Advertisement::new("lamp", "echostream/2", 6000)
            .property("room", "hall")
            .start()
            .expect("advertise lamp");
        let _thermostat = Advertisement::new("Thermostat", PROTOCOL, 6001)
            .property("room", "kitchen")
            .start()
            .expect("advertise thermostat");

        // By instance name, case-insensitively as DNS compares names; a timeout too long to
        // represent means no deadline (bounded here from outside).
        let found = tokio::time::timeout(STEP, discover("thermostat", Duration::MAX))
            .await
            .expect("found within STEP")
            .expect("by name");
        assert_eq!((found.instance.as_str(), found.port), ("Thermostat", 6001));
        // By protocol, property and predicate: only the thermostat passes all three.
        let filter = Filter::any()
            .protocol(PROTOCOL)
            .property("ROOM", "kitchen")
            .matching(|d| d.port > 6000);
        assert_eq!(discover(filter, STEP).await.expect("by filter").port, 6001);

        // A browser that already knows the lamp answers at once from what it knows.
        let mut browser = Watched::new(Browser::new().expect("browser"));
        browser.found("lamp").await;
        let mut browser = browser.browser;
        let started = Instant::now();
        let lamp = browser
            .discover(Filter::any().property("room", "hall"), STEP)
            .await
            .expect("lamp");
        assert_eq!(lamp.protocol.as_deref(), Some("echostream/2"));
        assert!(started.elapsed() < Duration::from_millis(100));

        // Nothing matches: a typed timeout naming the filter and what answered instead.
        let started = Instant::now();
        let error = browser
            .discover("printer", Duration::from_millis(1500))
            .await
            .expect_err("no printer here");
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(4),
            "{elapsed:?}"
        );
        match &error {
            DiscoveryError::Timeout {
                filter,
                waited,
                seen,
            } => {
                assert_eq!(filter, "instance \"printer\"");
                assert_eq!(*waited, Duration::from_millis(1500));
                assert!(seen.contains(&"lamp".to_owned()), "{seen:?}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains("instance \"printer\"") && message.contains("lamp"),
            "{message}"
        );
    });
}

#[test]
fn child_name_conflict_renames_the_later_advertiser() {
    if !in_child_netns() {
        return;
    }
    runtime().block_on(async {
        let mut browser = Watched::new(Browser::new().expect("browser"));
        let first = Advertisement::new("Game", PROTOCOL, 7000)
            .host_name("host-a")
            .start()
            .expect("first");
        assert_eq!(browser.found("Game").await.port, 7000);

        let second = Advertisement::new("Game", PROTOCOL, 7001)
            .host_name("host-b")
            .start()
            .expect("second");
        let renamed = browser.found("Game (2)").await;
        assert_eq!(renamed.port, 7001);
        // The advertiser learns its new name as the renamed announcement goes out, so at about
        // the time the browser sees it.
        let deadline = Instant::now() + STEP;
        while second.instance() != "Game (2)" && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(second.instance(), "Game (2)");
        assert_eq!(first.instance(), "Game");

        // Updates go out under the new name.
        let mut second = second;
        second.set_property("round", "2").expect("update");
        browser
            .found_where("Game (2)", |d| d.property("round") == Some("2"))
            .await;
        assert_eq!(
            browser.seen["Game"].properties.len(),
            0,
            "the first game is untouched"
        );

        // Withdrawing the renamed one withdraws what peers saw, not the original name, and
        // nothing of the update ever overwrote the first game.
        drop(second);
        browser.lost("Game (2)").await;
        let summary = |d: &Discovered| {
            (
                d.instance.clone(),
                d.host.clone(),
                d.port,
                d.properties.len(),
            )
        };
        let expected = vec![("Game".to_owned(), "host-a.local.".to_owned(), 7000, 0)];
        assert_eq!(
            browser.seen.values().map(summary).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(
            browser
                .browser
                .endpoints()
                .iter()
                .map(summary)
                .collect::<Vec<_>>(),
            expected
        );
    });
}

#[test]
fn child_malformed_txt_from_the_network() {
    if !in_child_netns() {
        return;
    }
    runtime().block_on(async {
        let mut browser = Browser::new().expect("browser");
        let txt = txt_bytes(&[
            b"txtvers=1",
            b"fp=zz:not:a:fingerprint",
            b"room=\xff\xfe",
            b"flag",
            b"FP=0000000000000000000000000000000000000000000000000000000000000000",
        ]);
        // A truncated entry at the end: its length byte claims more than is there.
        let mut txt = txt;
        txt.extend_from_slice(&[40, b'x', b'=']);
        let packet = response(
            "rogue",
            "rogue-host",
            9999,
            Ipv4Addr::new(10, 77, 0, 9),
            &txt,
        );

        let sender = tokio::net::UdpSocket::bind((V0_V4, 0)).await.expect("bind");
        let wait = async {
            loop {
                sender
                    .send_to(&packet, ("224.0.0.251", 5353))
                    .await
                    .expect("send");
                if let Ok(Some(DiscoveryEvent::Found(found))) =
                    tokio::time::timeout(Duration::from_millis(300), browser.next()).await
                {
                    return found;
                }
            }
        };
        let found = tokio::time::timeout(STEP, wait)
            .await
            .expect("the rogue responder is found");
        assert_eq!(found.instance, "rogue");
        assert_eq!(found.port, 9999);
        assert_eq!(found.addrs, vec![SocketAddr::from(([10, 77, 0, 9], 9999))]);
        assert_eq!(
            found.fingerprint, None,
            "a malformed fingerprint is not used"
        );
        assert_eq!(found.protocol, None);
        assert_eq!(
            found.properties.iter().collect::<Vec<_>>(),
            vec![(&"flag".to_owned(), &String::new())]
        );
        let issues: BTreeSet<String> = found.txt_issues.iter().map(|i| i.to_string()).collect();
        let expected: BTreeSet<String> = [
            TxtIssue::MalformedFingerprint {
                value: "zz:not:a:fingerprint".into(),
            },
            TxtIssue::NonUtf8Value { key: "room".into() },
            TxtIssue::MissingProtocol,
        ]
        .iter()
        .map(|i| i.to_string())
        .collect();
        assert_eq!(issues, expected);
    });
}

/// TXT record data: each entry prefixed by its length.
fn txt_bytes(entries: &[&[u8]]) -> Vec<u8> {
    let mut txt = Vec::new();
    for entry in entries {
        txt.push(u8::try_from(entry.len()).expect("short entry"));
        txt.extend_from_slice(entry);
    }
    txt
}

/// An mDNS response announcing `instance` of `_echostream._udp.local.` with a raw TXT record.
fn response(instance: &str, host: &str, port: u16, addr: Ipv4Addr, txt: &[u8]) -> Vec<u8> {
    const TYPE_A: u16 = 1;
    const TYPE_PTR: u16 = 12;
    const TYPE_TXT: u16 = 16;
    const TYPE_SRV: u16 = 33;
    const CLASS_IN: u16 = 1;
    const CACHE_FLUSH: u16 = 0x8000;
    let service = "_echostream._udp.local";
    let fullname = format!("{instance}.{service}");
    let host = format!("{host}.local");

    let mut packet = Vec::new();
    // Header: id 0, flags "authoritative response", no questions, 4 answers.
    for word in [0u16, 0x8400, 0, 4, 0, 0] {
        packet.extend_from_slice(&word.to_be_bytes());
    }
    let mut record = |name: &str, rtype: u16, class: u16, ttl: u32, rdata: &[u8]| {
        packet.extend_from_slice(&dns_name(name));
        packet.extend_from_slice(&rtype.to_be_bytes());
        packet.extend_from_slice(&class.to_be_bytes());
        packet.extend_from_slice(&ttl.to_be_bytes());
        packet.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
        packet.extend_from_slice(rdata);
    };
    record(service, TYPE_PTR, CLASS_IN, 4500, &dns_name(&fullname));
    let mut srv = vec![0, 0, 0, 0];
    srv.extend_from_slice(&port.to_be_bytes());
    srv.extend_from_slice(&dns_name(&host));
    record(&fullname, TYPE_SRV, CLASS_IN | CACHE_FLUSH, 120, &srv);
    record(&fullname, TYPE_TXT, CLASS_IN | CACHE_FLUSH, 4500, txt);
    record(&host, TYPE_A, CLASS_IN | CACHE_FLUSH, 120, &addr.octets());
    packet
}

/// A DNS name as uncompressed labels.
fn dns_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.') {
        out.push(u8::try_from(label.len()).expect("short label"));
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}
