//! The email sink: lettre over tokio with rustls. `starttls` upgrades a plain
//! connection (587), `tls` is TLS from the first byte (465), `none` is plaintext for
//! loopback relays. SMTP 5xx (authentication refused included) is permanent, 4xx and
//! connection trouble transient. An SMTP server's reply text is never kept: servers echo
//! the AUTH exchange (`454 ... |user|<password>`), so an error names the reply code and
//! a fixed description only; other errors (connection, TLS) go through the redactor.

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
use crate::redact::Redactor;

pub struct EmailSink {
    pub config: EmailSinkConfig,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    tz: Tz,
    /// The password in every form it may be echoed in.
    redactor: Redactor,
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
        let redactor = Redactor::new(config.password.iter().map(|p| p.expose()));
        Ok(EmailSink {
            config: config.clone(),
            transport: builder.build(),
            from,
            to,
            tz,
            redactor,
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
            Err(error) => Err(classify(&error, &self.redactor)),
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
            Err(error) => Err(classify(&error, &self.redactor)),
        }
    }
}

/// lettre's error as ours: a reply becomes its code and a fixed description (the
/// server's words may quote the credentials), anything else is redacted.
fn classify(error: &lettre::transport::smtp::Error, redactor: &Redactor) -> SendError {
    let text = match error.status() {
        Some(code) => reply_text(&code.to_string()),
        None if error.is_response() => "smtp: the server's reply could not be read".to_owned(),
        None => redactor.clean(&format!("smtp: {error}")),
    };
    // Permanent: a 5xx reply (authentication refused is 535), or the client refusing
    // (no common authentication mechanism): retrying cannot help.
    if error.is_permanent() || error.is_client() {
        SendError::permanent(text)
    } else {
        SendError::transient(text)
    }
}

/// `smtp: 535 authentication credentials invalid (the server's text is not shown)`.
pub fn reply_text(code: &str) -> String {
    let description = match code {
        "421" => "service not available, closing the connection",
        "450" => "mailbox unavailable (busy or temporarily blocked)",
        "451" => "local error in processing",
        "452" => "insufficient system storage",
        "454" => "temporary authentication failure",
        "455" => "server unable to accommodate parameters",
        "500" | "501" | "502" | "503" | "504" => {
            "the server refused a command (syntax or sequence)"
        }
        "521" | "556" => "the domain does not accept mail",
        "530" => "authentication required",
        "534" => "authentication mechanism too weak",
        "535" => "authentication credentials invalid",
        "538" => "encryption required for the authentication mechanism",
        "550" => "mailbox unavailable (a recipient or the sender was refused)",
        "551" => "user not local",
        "552" => "message exceeds the storage allocation",
        "553" => "mailbox name not allowed",
        "554" => "transaction failed",
        _ if code.starts_with('4') => "transient failure",
        _ if code.starts_with('5') => "permanent failure",
        _ => "unexpected reply",
    };
    format!(
        "smtp: {code} {description} (the server's text is not shown: it may quote the credentials)"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn replies_keep_their_code_and_a_fixed_text() {
        assert_eq!(
            super::reply_text("535"),
            "smtp: 535 authentication credentials invalid (the server's text is not shown: it may quote the credentials)"
        );
        assert!(super::reply_text("471").contains("471 transient failure"));
        assert!(super::reply_text("599").contains("599 permanent failure"));
    }
}
