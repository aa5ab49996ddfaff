//! `sluice trace`: run one synthesized packet through the programs attached now and say
//! which rule decided, as `file:line:col` of the source policy (see [`sluice_loader::trace`]).

use std::path::PathBuf;
use std::process::ExitCode;

use super::PinArgs;
use sluice_loader::trace::{self, L4, Target, TraceOptions, TraceRequest};

pub use super::Output;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The source pod: `namespace/name`, or a name unique across namespaces.
    #[arg(long, value_name = "POD")]
    pub from: String,
    /// The destination: a pod, or an IPv4 address (a pod's address counts as that pod).
    #[arg(long, value_name = "POD|IP")]
    pub to: String,
    /// Destination port, optionally with its protocol: `80`, `80/tcp`, `53/udp`, `9/sctp`.
    #[arg(long, value_name = "PORT[/PROTO]", conflicts_with = "icmp")]
    pub port: Option<String>,
    /// ICMP type and code: `8` (echo request), `3/4`.
    #[arg(long, value_name = "TYPE[/CODE]")]
    pub icmp: Option<String>,
    /// IP protocol by name (tcp, udp, sctp, icmp) or number; with `--port` for tcp, udp
    /// and sctp. Alone it sends a packet of that protocol without ports.
    #[arg(long, value_name = "PROTO")]
    pub proto: Option<String>,
    /// Source port (default: a fresh one from the top of the ephemeral range).
    #[arg(long, value_name = "PORT")]
    pub sport: Option<u16>,
    /// The bundle directory of the generation in force, when the loader kept no trace info.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(flatten)]
    pub pins: PinArgs,
}

fn proto_arg(s: &str) -> Result<u8, String> {
    trace::parse_proto(s)
        .ok_or_else(|| format!("unknown protocol `{s}` (tcp, udp, sctp, icmp or a number 0-255)"))
}

/// The L4 part of the request from `--port`, `--icmp` and `--proto`.
pub fn l4_of(port: Option<&str>, icmp: Option<&str>, proto: Option<&str>) -> Result<L4, String> {
    let proto = proto.map(proto_arg).transpose()?;
    match (port, icmp) {
        (Some(_), Some(_)) => Err("give --port or --icmp, not both".into()),
        (None, Some(spec)) => {
            if proto.is_some_and(|p| p != 1) {
                return Err("--icmp sends ICMP; drop --proto".into());
            }
            let (t, c) = spec.split_once('/').unwrap_or((spec, "0"));
            let num = |s: &str, what: &str| {
                s.parse::<u8>()
                    .map_err(|_| format!("ICMP {what} `{s}` is not a number 0-255"))
            };
            Ok(L4::Icmp {
                r#type: num(t, "type")?,
                code: num(c, "code")?,
            })
        }
        (Some(spec), None) => {
            let (n, suffix) = match spec.split_once('/') {
                Some((n, p)) => (n, Some(proto_arg(p)?)),
                None => (spec, None),
            };
            let p = match (suffix, proto) {
                (Some(a), Some(b)) if a != b => {
                    return Err(format!(
                        "--port says {} but --proto says {}",
                        trace::proto_name(a),
                        trace::proto_name(b)
                    ));
                }
                (Some(a), _) | (None, Some(a)) => a,
                (None, None) => 6,
            };
            if !matches!(p, 6 | 17 | 132) {
                return Err(format!(
                    "{} has no ports; use --icmp for ICMP, or --proto alone",
                    trace::proto_name(p)
                ));
            }
            let port = n
                .parse::<u16>()
                .map_err(|_| format!("port `{n}` is not a number 0-65535"))?;
            Ok(L4::Port { proto: p, port })
        }
        (None, None) => match proto {
            None => Err(
                "say what to send: --port PORT[/PROTO], --icmp TYPE[/CODE] or --proto PROTO".into(),
            ),
            Some(p @ (6 | 17 | 132)) => Err(format!(
                "{} needs a destination port: --port PORT/{}",
                trace::proto_name(p),
                trace::proto_name(p)
            )),
            Some(1) => Err("ICMP needs a type: --icmp TYPE[/CODE]".into()),
            Some(p) => Ok(L4::Proto { proto: p }),
        },
    }
}

pub fn run(args: Args) -> miette::Result<ExitCode> {
    let l4 = l4_of(
        args.port.as_deref(),
        args.icmp.as_deref(),
        args.proto.as_deref(),
    )
    .map_err(|e| miette::miette!(help = "see `sluice trace --help`", "{e}"))?;
    let req = TraceRequest {
        from: args.from.clone(),
        to: Target::parse(&args.to),
        l4,
        sport: args.sport,
    };
    let opts = TraceOptions {
        load: args.pins.options(None),
        bundle: args.bundle.clone(),
    };
    let report = trace::trace(&req, &opts).map_err(|e| miette::miette!("{e}"))?;
    match args.output {
        Output::Json => {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| miette::miette!("rendering JSON: {e}"))?;
            println!("{text}");
        }
        Output::Text => print!("{}", trace::render_text(&report)),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l4_arguments() {
        let ok = |p, i, r| l4_of(p, i, r).unwrap();
        let err = |p, i, r| l4_of(p, i, r).unwrap_err();
        assert_eq!(
            ok(Some("80/tcp"), None, None),
            L4::Port { proto: 6, port: 80 }
        );
        assert_eq!(ok(Some("80"), None, None), L4::Port { proto: 6, port: 80 });
        assert_eq!(
            ok(Some("53"), None, Some("udp")),
            L4::Port {
                proto: 17,
                port: 53
            }
        );
        assert_eq!(
            ok(Some("9/sctp"), None, None),
            L4::Port {
                proto: 132,
                port: 9
            }
        );
        assert_eq!(ok(None, Some("8"), None), L4::Icmp { r#type: 8, code: 0 });
        assert_eq!(
            ok(None, Some("3/4"), Some("icmp")),
            L4::Icmp { r#type: 3, code: 4 }
        );
        assert_eq!(ok(None, None, Some("47")), L4::Proto { proto: 47 });
        assert!(err(Some("80/udp"), None, Some("tcp")).contains("--proto says tcp"));
        assert!(err(None, None, Some("udp")).contains("needs a destination port"));
        assert!(err(None, None, None).contains("say what to send"));
        assert!(err(Some("80/icmp"), None, None).contains("has no ports"));
        assert!(err(Some("99999"), None, None).contains("not a number"));
        assert!(err(None, Some("300"), None).contains("ICMP type"));
        assert!(err(None, None, Some("bogus")).contains("unknown protocol"));
    }
}
