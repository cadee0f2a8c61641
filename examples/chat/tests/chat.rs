//! Runs the real `chat-server` and `chat-client` binaries on loopback and talks through them
//! as users would: the test writes to each client's standard input and waits for what it
//! prints. Every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The longest the test waits for any one line (debug builds on a busy machine).
const WAIT: Duration = Duration::from_secs(15);

/// A running example binary: its input, and the lines it printed so far.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(name: &str, exe: &str, args: &[&str]) -> Proc {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
        let (tx, lines) = channel();
        // Standard output and error both go to `lines`, each read on its own thread.
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for (stream, tx) in [
            (
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
                tx.clone(),
            ),
            (Box::new(stderr), tx),
        ] {
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Types `line` into the program.
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to stdin");
    }

    /// Waits for a line containing `needle`, and returns it.
    fn expect(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => panic!(
                    "{} never printed {needle:?}; it printed:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Everything printed so far (without waiting).
    fn printed(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// Closes standard input (end of input) and waits for the program to exit.
    fn finish(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let printed = self.printed();
                panic!("{} did not exit; it printed:\n{printed}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Never leave a process behind, whatever the test's outcome.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVER: &str = env!("CARGO_BIN_EXE_chat-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_chat-client");

fn client(user: &str, addr: &str, fingerprint: &str) -> Proc {
    let args = [
        "--server",
        addr,
        "--fingerprint",
        fingerprint,
        "--user",
        user,
    ];
    Proc::spawn(user, CLIENT, &args)
}

#[test]
fn three_users_chat_type_and_answer_invitations() {
    let mut server = Proc::spawn("server", SERVER, &["--listen", "127.0.0.1:0"]);
    let listening = server.expect("chat server listening on ");
    let addr = listening.rsplit(' ').next().expect("address").to_owned();
    let fingerprint = server.expect("fingerprint ")["fingerprint ".len()..].to_owned();

    let mut ann = client("ann", &addr, &fingerprint);
    ann.expect("logged in as ann");
    let mut bob = client("bob", &addr, &fingerprint);
    bob.expect("logged in as bob");
    let mut cat = client("cat", &addr, &fingerprint);
    cat.expect("logged in as cat");
    ann.expect("* cat joined #lobby");

    // A name already online is refused, with the server's reason.
    let mut again = client("ann", &addr, &fingerprint);
    again.expect("chat-client: login refused: the name ann is taken");
    assert!(!again.finish().success());

    ann.send("/join rust");
    ann.expect("you are now in #rust with ann");
    bob.expect("* ann left #lobby");

    // The server asks bob's client, with an rpc, and the answer comes from bob's keyboard.
    ann.send("/invite bob");
    bob.expect("? ann invites you to #rust: answer /accept or /decline within");
    bob.send("/accept");
    ann.expect("bob accepted your invitation");
    bob.expect("! you are now in #rust with ann, bob");
    server.expect("bob accepted ann's invitation to #rust");

    // cat asks bob over to the lobby: bob declines.
    cat.send("/invite bob lobby");
    bob.expect("? cat invites you to #lobby");
    bob.send("/decline");
    cat.expect("bob declined your invitation");
    bob.send("/accept");
    bob.expect("! no invitation is waiting for an answer");

    // Typing hints reach the others in the room, not the typist.
    bob.send("/typing");
    ann.expect("* bob is typing in #rust");

    // Messages fan out to the room, the sender included; not to other rooms.
    ann.send("hello bob");
    bob.expect("[#rust] ann: hello bob");
    ann.expect("[#rust] ann: hello bob");
    bob.send("hi ann");
    ann.expect("[#rust] bob: hi ann");
    cat.send("anyone in the lobby?");
    cat.expect("[#lobby] cat: anyone in the lobby?");
    assert!(!cat.printed().contains("hello bob"), "{}", cat.printed());
    assert!(!ann.printed().contains("anyone in the lobby"));

    // Mistakes get an answer and the client goes on.
    ann.send("/dance");
    ann.expect("! unknown command /dance (/help lists them)");
    ann.send("/join no spaces");
    ann.expect("! usage: /join ROOM");
    ann.send("/join bad!room");
    ann.expect("! cannot join: the room name `bad!room` contains `!`");
    ann.send("/invite nobody");
    ann.expect("! invitation failed: nobody is not online");

    // End of input: each client leaves cleanly, and the others are told.
    assert!(cat.finish().success(), "{}", cat.printed());
    cat.expect("bye");
    server.expect("cat left");
    assert!(bob.finish().success(), "{}", bob.printed());
    ann.expect("* bob left #rust");
    ann.send("/quit");
    assert!(ann.finish().success(), "{}", ann.printed());
}

#[test]
fn a_client_reports_what_it_cannot_do() {
    // A server whose fingerprint is not the one pinned is refused.
    let mut server = Proc::spawn("server", SERVER, &["--listen", "127.0.0.1:0"]);
    let listening = server.expect("chat server listening on ");
    let addr = listening.rsplit(' ').next().expect("address").to_owned();
    let wrong = ["00"; 32].join(":");
    let mut pinned_wrong = client("ann", &addr, &wrong);
    pinned_wrong.expect(&format!("chat-client: cannot connect to {addr}"));
    assert!(!pinned_wrong.finish().success());

    // A fingerprint that does not parse is a usage error.
    let mut bad = Proc::spawn("bad", CLIENT, &["--fingerprint", "xyz", "--user", "ann"]);
    bad.expect("invalid value 'xyz' for '--fingerprint <FINGERPRINT>'");
    assert_eq!(bad.finish().code(), Some(2));

    // An invalid name is refused by the server.
    let fingerprint = server.expect("fingerprint ")["fingerprint ".len()..].to_owned();
    let mut spaced = client("a b", &addr, &fingerprint);
    spaced.expect("login refused: the user name `a b` contains ` `");
    assert!(!spaced.finish().success());
}
