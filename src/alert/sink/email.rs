//! The email sink: lettre over tokio with rustls. `starttls` upgrades a plain
//! connection (587), `tls` is TLS from the first byte (465), `none` is plaintext for
//! loopback relays. SMTP 5xx (authentication refused included) is permanent, 4xx and
//! connection trouble transient.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{SendError, SinkError, SinkOptions};
use crate::alert::model::Message;
use crate::alert::render::email;
use crate::config::{EmailSinkConfig, SmtpSecurity};

pub struct EmailSink {
    pub config: EmailSinkConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    tz: Tz,
}

impl std::fmt::Debug for EmailSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config's password is a Secret: its Debug is redacted.
        f.debug_struct("EmailSink")
            .field("config", &self.config)
            .finish()
    }
}

fn mailbox(sink: &str, text: &str) -> Result<Mailbox, SinkError> {
    Mailbox::from_str(text).map_err(|error| SinkError {
        sink: sink.to_string(),
        reason: format!("{text:?} is not a mail address: {error}"),
    })
}

impl EmailSink {
    pub fn new(
        config: &EmailSinkConfig,
        tz: Tz,
        options: &SinkOptions,
    ) -> Result<EmailSink, SinkError> {
        let fail = |reason: String| SinkError {
            sink: config.name.clone(),
            reason,
        };
        let from = mailbox(&config.name, &config.from)?;
        let to = config
            .to
            .iter()
            .map(|to| mailbox(&config.name, to))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = || -> Result<TlsParameters, SinkError> {
            let mut builder = TlsParameters::builder(config.host.clone());
            if let Some(pem) = &options.smtp_root_pem {
                let root = Certificate::from_pem(pem)
                    .map_err(|error| fail(format!("the extra root certificate: {error}")))?;
                builder = builder
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(root);
            }
            builder
                .build_rustls()
                .map_err(|error| fail(format!("TLS setup: {error}")))
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
                .port(config.port)
                .timeout(Some(config.timeout));
        builder = match config.security {
            SmtpSecurity::Starttls => builder.tls(Tls::Required(tls()?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls()?)),
            SmtpSecurity::None => builder.tls(Tls::None),
        };
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose().to_string(),
            ));
        }
        Ok(EmailSink {
            config: config.clone(),
            transport: builder.build(),
            from,
            to,
            tz,
        })
    }

    pub async fn send(&self, message: &Message, sent_at: DateTime<Utc>) -> Result<(), SendError> {
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(email::subject(message))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let mail = builder
            .body(email::body(message, self.tz, sent_at))
            .map_err(|error| SendError::permanent(format!("cannot build the mail: {error}")))?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(error) => Err(classify(&error)),
        }
    }
}

/// An image shown inside an HTML mail, referenced from the HTML as `cid:<content_id>`.
#[derive(Debug, Clone, Copy)]
pub struct InlineImage<'a> {
    pub content_id: &'a str,
    pub mime_type: &'a str,
    pub bytes: &'a [u8],
}

impl EmailSink {
    /// An HTML mail with a plain-text alternative and inline images:
    /// multipart/alternative { text/plain, multipart/related { text/html, image... } }.
    pub async fn send_html(
        &self,
        subject: &str,
        text: &str,
        html: &str,
        images: &[InlineImage<'_>],
    ) -> Result<(), SendError> {
        use lettre::message::{Attachment, MultiPart, SinglePart};
        let mut related = MultiPart::related().singlepart(SinglePart::html(html.to_string()));
        for image in images {
            let content_type = ContentType::parse(image.mime_type)
                .map_err(|e| SendError::permanent(format!("image type: {e}")))?;
            related = related.singlepart(
                Attachment::new_inline(image.content_id.to_string())
                    .body(image.bytes.to_vec(), content_type),
            );
        }
        let body = MultiPart::alternative()
            .singlepart(SinglePart::plain(text.to_string()))
            .multipart(related);
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .subject(subject);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let mail = builder
            .multipart(body)
            .map_err(|error| SendError::permanent(format!("cannot build the mail: {error}")))?;
        match self.transport.send(mail).await {
            Ok(_) => Ok(()),
            Err(error) => Err(classify(&error)),
        }
    }
}

/// lettre's error as ours. Its text names the SMTP reply, never the credentials.
fn classify(error: &lettre::transport::smtp::Error) -> SendError {
    let text = format!("smtp: {error}");
    // Permanent: a 5xx reply (authentication refused is 535), or the client refusing
    // (no common authentication mechanism): retrying cannot help.
    if error.is_permanent() || error.is_client() {
        SendError::permanent(text)
    } else {
        SendError::transient(text)
    }
}
