//! A differential test: the same zone file served by Knot DNS (`knotd`, Debian's `knot`,
//! which `scripts/test` installs) and by SecureCart gives the same answers for plain
//! records: the same code, authority flag, answer and authority records, over UDP with and
//! without EDNS (the same truncation, an OPT record back only when one was sent, BADVERS
//! for a version past 0) and over TCP.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use securecart_dns::{Catalog, DnsServer, Responder, Zone};
use tokio::net::UdpSocket;

const ZONE: &str = r#"$ORIGIN shop.test.
$TTL 300
@         IN SOA   ns1 hostmaster 2026112501 7200 3600 1209600 60
@         IN NS    ns1
@         IN MX    10 mail
@         IN TXT   "v=spf1 mx -all"
@         IN CAA   0 issue "letsencrypt.org"
ns1       IN A     127.0.0.53
mail      IN A     127.0.0.25
www       IN A     127.1.0.1
www       IN A     127.1.0.2
www       IN AAAA  ::1
shop      IN CNAME www
away      IN CNAME www.example.
_https._tcp IN SRV 10 5 443 www
*.img     IN A     127.1.0.9
a.b.c     IN TXT   "deep"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 01"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 02"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 03"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 04"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 05"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 06"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 07"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 08"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 09"
big       IN TXT   "one of ten long texts, which together are longer than 512 bytes: 10"
sub       IN NS    ns.sub
ns.sub    IN A     127.9.0.1
"#;

/// Knot DNS on a free port, stopped when dropped.
struct Knot {
    child: Child,
    address: SocketAddr,
    _directory: tempfile::TempDir,
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("address").port()
}

fn start_knot() -> Knot {
    let directory = tempfile::tempdir().expect("directory");
    let zone = directory.path().join("shop.test.zone");
    std::fs::write(&zone, ZONE).expect("zone file");
    let port = free_port();
    let config = directory.path().join("knot.conf");
    std::fs::write(
        &config,
        format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {dir}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
             database:\n    storage: {dir}/db\n\
             zone:\n  - domain: shop.test\n    file: {zone}\n    storage: {dir}\n\
             log:\n  - target: stderr\n    any: warning\n",
            dir = directory.path().display(),
            zone = zone.display(),
        ),
    )
    .expect("config");
    let child = Command::new("knotd")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("knotd runs (scripts/test installs Debian's knot)");
    Knot {
        child,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
        _directory: directory,
    }
}

/// Asks over UDP, with EDNS of this payload size and version if given.
async fn ask(
    address: SocketAddr,
    name: &str,
    record_type: RecordType,
    edns: Option<(u16, u8)>,
) -> Option<Message> {
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        record_type,
    ));
    if let Some((payload, version)) = edns {
        let mut options = Edns::new();
        options.set_max_payload(payload).set_version(version);
        query.set_edns(options);
    }
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket
        .send_to(&query.to_vec().expect("encode"), address)
        .await
        .expect("send");
    let mut buffer = vec![0u8; 4096];
    let received = tokio::time::timeout(Duration::from_millis(300), socket.recv(&mut buffer))
        .await
        .ok()?
        .ok()?;
    Message::from_vec(&buffer[..received]).ok()
}

/// Asks over TCP, without EDNS.
async fn ask_tcp(address: SocketAddr, name: &str, record_type: RecordType) -> Option<Message> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut query = Message::new(7, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(
        Name::from_ascii(name).expect("name"),
        record_type,
    ));
    let bytes = query.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(&framed).await.ok()?;
        let mut length = [0u8; 2];
        stream.read_exact(&mut length).await.ok()?;
        let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
        stream.read_exact(&mut answer).await.ok()?;
        Message::from_vec(&answer).ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

/// What must be the same: code (extended by EDNS), AA, TC, whether an OPT record came
/// back and its version, the answer and authority records as text.
type Essence = (
    String,
    bool,
    bool,
    Option<u8>,
    BTreeSet<String>,
    BTreeSet<String>,
);

fn essence(message: &Message) -> Essence {
    (
        format!("{:?}", message.metadata.response_code),
        message.metadata.authoritative,
        message.metadata.truncation,
        message.edns.as_ref().map(Edns::version),
        message
            .answers
            .iter()
            .map(|record| {
                format!(
                    "{} {} {} {}",
                    record.name.to_ascii().to_lowercase(),
                    record.ttl,
                    record.record_type(),
                    record.data
                )
            })
            .collect(),
        message
            .authorities
            .iter()
            .map(|record| {
                format!(
                    "{} {} {} {}",
                    record.name.to_ascii().to_lowercase(),
                    record.ttl,
                    record.record_type(),
                    record.data
                )
            })
            .collect(),
    )
}

/// A Knot DNS that answers. The port is chosen free, but another test may take it (for TCP,
/// which Knot binds as well) before Knot binds it: a knotd that exits is started again on
/// another port.
async fn start_ready_knot() -> Knot {
    for _ in 0..5 {
        let mut knot = start_knot();
        // Knot loads its zone in the background.
        for _ in 0..100 {
            if ask(knot.address, "www.shop.test.", RecordType::A, None)
                .await
                .is_some_and(|answer| !answer.answers.is_empty())
            {
                return knot;
            }
            if knot.child.try_wait().ok().flatten().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!("knotd never answered");
}

#[tokio::test]
async fn knot_and_securecart_give_the_same_answers_for_plain_records() {
    let knot = start_ready_knot().await;
    let zone = Zone::parse(ZONE, "shop.test.zone", None, None).expect("zone");
    let server = DnsServer::bind(
        "127.0.0.1:0".parse().expect("address"),
        Responder::new(Catalog::new(vec![zone]).expect("catalog")),
    )
    .await
    .expect("binds");
    let ours = server.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(1, async move {
        let _ = stopped.await;
    }));

    let questions = [
        ("shop.test.", RecordType::SOA),
        ("shop.test.", RecordType::NS),
        ("shop.test.", RecordType::MX),
        ("shop.test.", RecordType::TXT),
        ("shop.test.", RecordType::CAA),
        ("www.shop.test.", RecordType::A),
        ("www.shop.test.", RecordType::AAAA),
        ("WWW.SHOP.TEST.", RecordType::A),
        ("www.shop.test.", RecordType::MX),
        ("nope.shop.test.", RecordType::A),
        ("shop.shop.test.", RecordType::A),
        ("shop.shop.test.", RecordType::CNAME),
        ("away.shop.test.", RecordType::A),
        ("_https._tcp.shop.test.", RecordType::SRV),
        ("cat.img.shop.test.", RecordType::A),
        ("cat.img.shop.test.", RecordType::AAAA),
        ("b.c.shop.test.", RecordType::TXT),
        ("a.b.c.shop.test.", RecordType::TXT),
        ("x.sub.shop.test.", RecordType::A),
        ("sub.shop.test.", RecordType::NS),
        ("www.example.", RecordType::A),
        ("big.shop.test.", RecordType::TXT),
    ];
    // Without EDNS; with it, at the usual payload and at the least; and with a version
    // neither server speaks.
    let ways = [None, Some((1232, 0)), Some((512, 0)), Some((1232, 1))];
    let mut truncated = 0;
    for (name, record_type) in questions {
        for edns in ways {
            let theirs = ask(knot.address, name, record_type, edns)
                .await
                .expect("knot answers");
            let mine = ask(ours, name, record_type, edns)
                .await
                .expect("securecart answers");
            assert_eq!(
                essence(&mine),
                essence(&theirs),
                "{name} {record_type} {edns:?}"
            );
            truncated += usize::from(theirs.metadata.truncation);
        }
        let theirs = ask_tcp(knot.address, name, record_type)
            .await
            .expect("knot answers over TCP");
        let mine = ask_tcp(ours, name, record_type)
            .await
            .expect("securecart answers over TCP");
        assert_eq!(essence(&mine), essence(&theirs), "{name} {record_type} TCP");
        assert!(!mine.metadata.truncation, "{name} {record_type} TCP");
    }
    // The long texts did not fit in 512 bytes, with or without EDNS.
    assert_eq!(truncated, 2);
    stop.send(()).expect("stop");
    task.await.expect("server stops").expect("served");
}
