//! vless:// links, as the API hands them to users' clients:
//! `vless://UUID@HOST:PORT?security=reality&sni=NAME&...#LABEL`. Parsing only.

use reqwest::Url;
use serde::Serialize;

/// What a client dials: the host, the port and the server name it asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VlessLink {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `sni`, when the link names one.
    pub sni: Option<String>,
    /// `security` (`reality` for every link these servers hand out).
    pub security: Option<String>,
}

impl VlessLink {
    /// Parse one link; None when it is not a vless:// URL with a host.
    pub fn parse(text: &str) -> Option<VlessLink> {
        let text = text.trim();
        if !text.get(..8)?.eq_ignore_ascii_case("vless://") {
            return None;
        }
        let url = Url::parse(text).ok()?;
        let host = url
            .host_str()?
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        if host.is_empty() {
            return None;
        }
        let query = |name: &str| {
            url.query_pairs()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        Some(VlessLink {
            host,
            port: url.port().unwrap_or(443),
            sni: query("sni"),
            security: query("security"),
        })
    }

    /// The first link in a text (the 1.x `client_config` is prose around the link); a
    /// link runs to the end of its line.
    pub fn find_in(text: &str) -> Option<VlessLink> {
        let lower = text.to_ascii_lowercase();
        lower.match_indices("vless://").find_map(|(at, _)| {
            let rest = &text[at..];
            let line = rest.split(['\n', '\r']).next().unwrap_or(rest);
            VlessLink::parse(line)
        })
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn endpoint(&self) -> String {
        endpoint(&self.host, self.port)
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_of_both_generations() {
        let v2 = "vless://55900473-00a8-4fe9-b4c1-bb0695694daa@veil-bird.ru:10003?type=tcp&security=reality&encryption=none&fp=chrome&pbk=9StR&sid=fed93c9f&sni=www.microsoft.com#Carol tablet";
        let link = VlessLink::parse(v2).unwrap();
        assert_eq!(
            (link.host.as_str(), link.port, link.sni.as_deref()),
            ("veil-bird.ru", 10003, Some("www.microsoft.com"))
        );
        assert_eq!(link.security.as_deref(), Some("reality"));
        let v1 = "=== Конфигурация ===\nVLESS URL: vless://0f9b@Veil-Bird.ru:443?encryption=none&security=reality&sni=www.microsoft.com&flow=#Alice iPhone\n\nQR: vless://other@x:1";
        let link = VlessLink::find_in(v1).unwrap();
        assert_eq!((link.host.as_str(), link.port), ("veil-bird.ru", 443));
        assert_eq!(link.endpoint(), "veil-bird.ru:443");
    }

    #[test]
    fn odd_links() {
        let v6 = VlessLink::parse("vless://u@[2001:db8::1]:8443?sni=a.example").unwrap();
        assert_eq!(v6.host, "2001:db8::1");
        assert_eq!(v6.endpoint(), "[2001:db8::1]:8443");
        assert_eq!(VlessLink::parse("vless://u@h.example").unwrap().port, 443);
        assert_eq!(VlessLink::parse("vless://u@h?sni=").unwrap().sni, None);
        for bad in ["", "vmess://u@h:1", "vless://", "http://h:1", "vless:"] {
            assert_eq!(VlessLink::parse(bad), None, "{bad:?}");
        }
        assert_eq!(VlessLink::find_in("no link here"), None);
    }
}
