//! Server addresses as users type them (`127.0.0.1:8080`, `localhost:8080`,
//! `http://host:port`) and as tonic wants them (a URL).

use crate::broker::BrokerError;

/// The URL of `addr`: `http://` is added to a bare `host:port`; `https://`
/// and `http://` URLs are kept. Anything else is an invalid argument.
pub fn endpoint_url(addr: &str) -> Result<String, BrokerError> {
    let addr = addr.trim();
    let url = if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let host_port = rest.split('/').next().unwrap_or("");
    let valid = match host_port.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok(),
        None => false,
    };
    if !valid || tonic::transport::Endpoint::from_shared(url.clone()).is_err() {
        return Err(BrokerError::InvalidArgument(format!(
            "{addr:?} is not a server address: expected HOST:PORT or http://HOST:PORT"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn bare_addresses_get_a_scheme_and_garbage_is_refused() {
        assert_eq!(
            endpoint_url("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            endpoint_url("http://localhost:9").unwrap(),
            "http://localhost:9"
        );
        for bad in ["", "localhost", ":80", "host:port", "http://", "a b:1"] {
            assert!(endpoint_url(bad).is_err(), "{bad:?}");
        }
    }
}
