//! Who the client is: the address a per-address limit counts and upstreams see in
//! `X-Forwarded-For`.
//!
//! Behind an Ingress every connection comes from the ingress controller, so the peer address
//! alone would put a whole region's clients in one throttling bucket. Proxies named in
//! `trusted_proxies` (CIDRs) are believed about who they forwarded for: the client is the
//! nearest address in `X-Forwarded-For`, read from the right, that is not itself a trusted
//! proxy. Whatever lies further left was written by the client and is never believed, so a
//! forged header cannot pick another bucket. With no trusted proxies the header is ignored.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client's address, from the connection's `peer` and the `X-Forwarded-For` header values
/// in the order received.
pub fn client_address<'a>(
    peer: Option<IpAddr>,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer?;
    if !is_trusted(&client) {
        return Some(client);
    }
    for hop in forwarded_for.rev().flat_map(|v| v.rsplit(',')) {
        // An entry that is not an address ends what can be believed: the last trusted hop
        // stands for the client.
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// Parses `trusted_proxies`: comma-separated CIDRs or single addresses.
pub fn parse_trusted(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("trusted_proxies: {s:?} is not a CIDR or an address"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let peer = Some(ip("10.0.0.5"));
        assert_eq!(
            client_address(peer, ["203.0.113.7"].into_iter(), &[]),
            Some(ip("10.0.0.5"))
        );
        assert_eq!(client_address(None, [].into_iter(), &[]), None);
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let trusted = parse_trusted("10.0.0.0/8, 192.168.1.1").unwrap();
        let peer = Some(ip("10.0.0.5"));
        // The ingress appended the client it saw; what the client wrote on the left is not
        // believed.
        assert_eq!(
            client_address(peer, ["198.51.100.1, 203.0.113.7"].into_iter(), &trusted),
            Some(ip("203.0.113.7"))
        );
        // Two trusted hops (a load balancer, then the ingress), in one header or several.
        assert_eq!(
            client_address(peer, ["203.0.113.7, 192.168.1.1"].into_iter(), &trusted),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            client_address(peer, ["203.0.113.7", "10.1.1.1"].into_iter(), &trusted),
            Some(ip("203.0.113.7"))
        );
        // A peer that is not a trusted proxy is the client, whatever it claims.
        assert_eq!(
            client_address(
                Some(ip("198.51.100.9")),
                ["203.0.113.7"].into_iter(),
                &trusted
            ),
            Some(ip("198.51.100.9"))
        );
        // Garbage stops the walk at the last trusted hop; no header leaves the peer.
        assert_eq!(
            client_address(peer, ["not-an-ip, 10.2.2.2"].into_iter(), &trusted),
            Some(ip("10.2.2.2"))
        );
        assert_eq!(
            client_address(peer, [].into_iter(), &trusted),
            Some(ip("10.0.0.5"))
        );
    }

    #[test]
    fn trusted_proxies_parse_or_say_which_entry_is_wrong() {
        assert_eq!(parse_trusted("").unwrap(), vec![]);
        assert_eq!(
            parse_trusted("10.0.0.0/8,fc00::/7, 127.0.0.1")
                .unwrap()
                .len(),
            3
        );
        let err = parse_trusted("10.0.0.0/8, ten").unwrap_err();
        assert!(err.contains("\"ten\""), "{err}");
    }
}
