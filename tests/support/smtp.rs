//! A real SMTP server for tests: mailin's protocol state machine behind a tokio
//! listener on 127.0.0.1:0, plain or with STARTTLS (the checked-in test certificate),
//! optionally requiring AUTH. It records every mail; `set_down(true)` makes it answer
//! 421 (service not available) like a relay under maintenance.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use mailin::{Action, AuthMechanism, Handler, Response, Session, SessionBuilder, response};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub const CERT: &[u8] = include_bytes!("../fixtures/alerts/smtp-test-cert.pem");
const KEY: &[u8] = include_bytes!("../fixtures/alerts/smtp-test-key.pem");

/// One received mail.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    pub auth: Option<(String, String)>,
}

impl Mail {
    /// A header's value (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next()?;
        let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        head.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    pub fn body(&self) -> String {
        self.data
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.replace("\r\n", "\n"))
            .unwrap_or_default()
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Security {
    Plain,
    Starttls,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Recorder {
    mails: Arc<Mutex<Vec<Mail>>>,
    current: Mail,
    credentials: Option<(String, String)>,
}

impl Handler for Recorder {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.current.from = from.to_string();
        self.current.to = to.to_vec();
        self.current.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        self.mails.lock().unwrap().push(self.current.clone());
        response::OK
    }

    fn auth_plain(&mut self, _authz: &str, user: &str, password: &str) -> Response {
        self.check(user, password)
    }

    fn auth_login(&mut self, user: &str, password: &str) -> Response {
        self.check(user, password)
    }
}

impl Recorder {
    fn check(&mut self, user: &str, password: &str) -> Response {
        self.current.auth = Some((user.to_string(), password.to_string()));
        match &self.credentials {
            Some((u, p)) if u == user && p == password => response::AUTH_OK,
            _ => response::INVALID_CREDENTIALS,
        }
    }
}

enum Next {
    Done,
    UpgradeTls,
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    session: &mut Session<Recorder>,
) -> std::io::Result<Next> {
    let mut stream = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if stream.read_until(b'\n', &mut line).await? == 0 {
            return Ok(Next::Done);
        }
        let response = session.process(&line);
        match response.action {
            Action::NoReply => continue,
            Action::Reply => stream.write_all(&response.buffer()?).await?,
            Action::Close => {
                stream.write_all(&response.buffer()?).await?;
                return Ok(Next::Done);
            }
            Action::UpgradeTls => {
                stream.write_all(&response.buffer()?).await?;
                stream.flush().await?;
                return Ok(Next::UpgradeTls);
            }
        }
    }
}

fn acceptor() -> TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(CERT)
        .collect::<Result<_, _>>()
        .expect("test certificate");
    let key = PrivateKeyDer::from_pem_slice(KEY).expect("test key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    TlsAcceptor::from(Arc::new(config))
}

impl SmtpServer {
    /// Start on an ephemeral port; `credentials`: AUTH required with these.
    pub async fn start(security: Security, credentials: Option<(&str, &str)>) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let credentials = credentials.map(|(u, p)| (u.to_string(), p.to_string()));
        let (m, d) = (mails.clone(), down.clone());
        let task = tokio::spawn(async move {
            let acceptor = acceptor();
            loop {
                let Ok((mut socket, peer)) = listener.accept().await else {
                    return;
                };
                let (mails, down, credentials, acceptor) =
                    (m.clone(), d.clone(), credentials.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if down.load(Ordering::SeqCst) {
                        let _ = socket.write_all(b"421 Service not available\r\n").await;
                        return;
                    }
                    let mut builder = SessionBuilder::new("test.smtp");
                    if security == Security::Starttls {
                        builder.enable_start_tls();
                    }
                    // With AUTH enabled, mailin requires it before MAIL.
                    if credentials.is_some() {
                        builder.enable_auth(AuthMechanism::Plain);
                        builder.enable_auth(AuthMechanism::Login);
                        if security == Security::Plain {
                            builder.insecure_enable_plaintext_auth();
                        }
                    }
                    let ip: IpAddr = peer.ip();
                    let recorder = Recorder {
                        mails,
                        current: Mail::default(),
                        credentials,
                    };
                    let mut session = builder.build(ip, recorder);
                    let greeting = session.greeting().buffer().unwrap();
                    if socket.write_all(&greeting).await.is_err() {
                        return;
                    }
                    if let Ok(Next::UpgradeTls) = converse(&mut socket, &mut session).await {
                        let Ok(tls) = acceptor.accept(socket).await else {
                            return;
                        };
                        session.tls_active();
                        let _ = converse(tls, &mut session).await;
                    }
                });
            }
        });
        SmtpServer {
            addr,
            mails,
            down,
            task,
        }
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}
