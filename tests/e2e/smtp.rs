//! A real SMTP server over TCP for the tests: accepts every message and keeps
//! it. It can also speak TLS, by STARTTLS or from the first byte, with a
//! certificate for `localhost` from a throwaway CA.

use std::io::{BufRead as _, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the sink offers TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP; STARTTLS is not offered.
    None,
    /// Plain greeting, STARTTLS offered in EHLO (port 587 style).
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

/// A CA and the `localhost` certificate it signed.
pub struct TestCertificates {
    /// The CA certificate, PEM: what a client must trust.
    pub ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestCertificates {
    pub fn generate() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Frontdesk test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &ca, &ca_key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        Self {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }
}

/// What the sink received: the message and whether it came over TLS.
type Inbox = Arc<Mutex<Vec<(String, bool)>>>;

/// A reply the sink gives to one verb instead of accepting it:
/// `("MAIL", "554 5.7.1 relay access denied")`.
type Refusal = Arc<Mutex<Option<(&'static str, &'static str)>>>;

pub struct SmtpSink {
    pub port: u16,
    messages: Inbox,
    stop: Arc<AtomicBool>,
    refusal: Refusal,
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// Listens on `port` (0 picks one), e.g. where a test said SMTP would be.
    pub fn start_on(port: u16) -> Self {
        Self::listen(port, TlsMode::None, None)
    }

    /// A sink speaking TLS as `mode` says, with `certificates`.
    pub fn start_tls(mode: TlsMode, certificates: &TestCertificates) -> Self {
        Self::listen(0, mode, Some(certificates.server.clone()))
    }

    fn listen(port: u16, mode: TlsMode, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind SMTP sink");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let messages: Inbox = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let refusal: Refusal = Arc::new(Mutex::new(None));
        let (m, s, r) = (messages.clone(), stop.clone(), refusal.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (m, r, tls) = (m.clone(), r.clone(), tls.clone());
                        std::thread::spawn(move || {
                            let _ = serve(stream, &m, &r, mode, tls);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            port,
            messages,
            stop,
            refusal,
        }
    }

    /// From now on answers `verb` with `reply` (`None`: accepts again).
    pub fn refuse(&self, refusal: Option<(&'static str, &'static str)>) {
        *self.refusal.lock().unwrap() = refusal;
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| m.clone())
            .collect()
    }

    /// For each message received, whether it came over TLS.
    pub fn encrypted(&self) -> Vec<bool> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| *e)
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    messages: &Mutex<Vec<(String, bool)>>,
    refusal: &Refusal,
    mode: TlsMode,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let secure = |stream: TcpStream| -> std::io::Result<_> {
        let config = tls.clone().expect("a TLS sink has certificates");
        let connection = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
        Ok(rustls::StreamOwned::new(connection, stream))
    };
    match mode {
        TlsMode::None => session(stream, messages, refusal, Session::plain()).map(drop),
        TlsMode::Implicit => {
            session(secure(stream)?, messages, refusal, Session::encrypted(true)).map(drop)
        }
        TlsMode::StartTls => {
            match session(stream, messages, refusal, Session::offering_starttls())? {
                Some(upgraded) => session(
                    secure(upgraded)?,
                    messages,
                    refusal,
                    Session::encrypted(false),
                )
                .map(drop),
                None => Ok(()),
            }
        }
    }
}

struct Session {
    greet: bool,
    offer_starttls: bool,
    encrypted: bool,
}

impl Session {
    fn plain() -> Self {
        Self {
            greet: true,
            offer_starttls: false,
            encrypted: false,
        }
    }

    fn offering_starttls() -> Self {
        Self {
            offer_starttls: true,
            ..Self::plain()
        }
    }

    /// After STARTTLS the client speaks first (EHLO again), so no greeting.
    fn encrypted(greet: bool) -> Self {
        Self {
            greet,
            offer_starttls: false,
            encrypted: true,
        }
    }
}

/// One SMTP conversation on `stream`; hands the stream back when the client
/// asked for STARTTLS.
fn session<S: Read + Write>(
    stream: S,
    messages: &Mutex<Vec<(String, bool)>>,
    refusal: &Refusal,
    how: Session,
) -> std::io::Result<Option<S>> {
    let mut reader = BufReader::new(stream);
    if how.greet {
        reader
            .get_mut()
            .write_all(b"220 sink.test ESMTP ready\r\n")?;
        reader.get_mut().flush()?;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        let refused = *refusal.lock().unwrap();
        if let Some((refused_verb, reply)) = refused
            && refused_verb == verb
        {
            reader
                .get_mut()
                .write_all(format!("{reply}\r\n").as_bytes())?;
            reader.get_mut().flush()?;
            continue;
        }
        let reply: &[u8] = match verb.as_str() {
            "EHLO" if how.offer_starttls => {
                b"250-sink.test\r\n250-8BITMIME\r\n250-STARTTLS\r\n250 SMTPUTF8\r\n"
            }
            "EHLO" => b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "STAR" if how.offer_starttls => {
                reader.get_mut().write_all(b"220 go ahead\r\n")?;
                reader.get_mut().flush()?;
                return Ok(Some(reader.into_inner()));
            }
            "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 OK\r\n",
            "DATA" => {
                reader
                    .get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                reader.get_mut().flush()?;
                let mut body = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        return Ok(None);
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    body.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                messages.lock().unwrap().push((body, how.encrypted));
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                reader.get_mut().write_all(b"221 bye\r\n")?;
                reader.get_mut().flush()?;
                return Ok(None);
            }
            _ => b"502 command not implemented\r\n",
        };
        reader.get_mut().write_all(reply)?;
        reader.get_mut().flush()?;
    }
}

/// The parts of a multipart message as (Content-Type, decoded body).
pub fn parts(message: &str) -> Vec<(String, String)> {
    let boundary = message
        .split("boundary=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a multipart message");
    message
        .split(&format!("--{boundary}"))
        .skip(1)
        .filter(|part| !part.starts_with("--"))
        .map(|part| {
            let (head, body) = part
                .trim_start()
                .split_once("\r\n\r\n")
                .unwrap_or((part, ""));
            let content_type = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .unwrap_or("")
                .to_string();
            let body = if head.contains("quoted-printable") {
                decode_quoted_printable(body)
            } else {
                body.to_string()
            };
            (content_type, body)
        })
        .collect()
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
