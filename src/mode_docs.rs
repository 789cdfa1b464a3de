//! `dnsensor generate-docs` (hidden): writes the man page dnsensor(8) and the shell completions
//! that the packages install, all made from the command-line definition in `cli.rs`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

use crate::cli::{Cli, GenerateDocsArgs};
use crate::fail;

/// Writes `dnsensor.8`, `dnsensor.bash`, `_dnsensor` and `dnsensor.fish` into `--out`
/// (created if missing) and lists them on stdout.
pub fn main(args: GenerateDocsArgs) -> ExitCode {
    match generate(&args.out) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(1, format!("generate-docs: {}: {e}", args.out.display())),
    }
}

fn generate(out: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let page = out.join("dnsensor.8");
    let mut buf = Vec::new();
    man_page(&mut buf)?;
    fs::write(&page, buf)?;
    written.push(page);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = visible_command();
        written.push(clap_complete::generate_to(
            shell, &mut cmd, "dnsensor", out,
        )?);
    }
    Ok(written)
}

/// The command line without its hidden subcommands, which clap_complete would offer too.
fn visible_command() -> clap::Command {
    let full = Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    let mut cmd = clap::Command::new("dnsensor")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .subcommands(visible);
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// The modes and the configuration section each reads, in the order the page lists them.
const SECTIONS: &[(&str, &str)] = &[
    ("dnstap", "the common keys and [dnstap]"),
    ("capture", "the common keys and [capture]"),
    ("proxy", "the common keys and [proxy]"),
    (
        "collector",
        "the [collector] table (and the top-level log-level)",
    ),
    ("check-config", "every section"),
];

/// dnsensor(8): clap_mangen's title, name, synopsis and command list, then one section per
/// mode with its synopsis and options, then the hand-written sections operators look for.
fn man_page(w: &mut dyn Write) -> std::io::Result<()> {
    let mut root = Cli::command().disable_help_subcommand(true);
    root.build();
    let man = Man::new(root.clone())
        .title("DNSENSOR")
        .section("8")
        .manual("System Administration");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    description(w)?;
    modes(w, &root)?;
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        mode_section(w, sub)?;
    }
    configuration(w)?;
    trailer(w)?;
    man.render_version_section(w)
}

fn description(w: &mut dyn Write) -> std::io::Result<()> {
    let mut r = Roff::default();
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(
        "dnsensor is a passive DNS sensor. It runs next to a recursive resolver and records \
         the resolver's recursive answers (the resolver to authoritative segment), keeps no \
         client data, de-duplicates the records into RRsets and writes them as Passive DNS \
         Common Output Format (COF) lines, or seals them into encrypted batches that it \
         spools and delivers to a collector.",
    )]);
    r.control("PP", []);
    r.text([roman(
        "It takes its observations from dnstap (Unbound, BIND, PowerDNS Recursor, Knot \
         Resolver), from a mirror port or capture files through libpcap, or as an inline \
         forwarding proxy in front of the resolver. The reference collector that receives \
         sealed batches is the same binary.",
    )]);
    r.to_writer(w)
}

/// The list of modes, each with its one-line description (all on this page, unlike
/// clap_mangen's subcommand list, which points to a page per subcommand).
fn modes(w: &mut dyn Write, root: &clap::Command) -> std::io::Result<()> {
    let mut r = Roff::default();
    r.control("SH", ["MODES"]);
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        r.control("TP", []);
        r.text([bold(format!("dnsensor {}", sub.get_name()))]);
        if let Some(about) = sub.get_about() {
            r.text([roman(about.to_string())]);
        }
    }
    r.to_writer(w)
}

/// One mode: a section headed `dnsensor MODE`, its about text, usage and options.
fn mode_section(w: &mut dyn Write, sub: &clap::Command) -> std::io::Result<()> {
    let name = sub.get_name();
    let mut r = Roff::default();
    r.control("SH", [format!("DNSENSOR {}", name.to_uppercase()).as_str()]);
    let usage = sub.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage: ");
    r.text([
        bold(format!("dnsensor {name}")),
        roman(usage.trim_start_matches(&format!("dnsensor {name}"))),
    ]);
    r.control("PP", []);
    if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
        r.text([roman(about.to_string())]);
    }
    if let Some((_, reads)) = SECTIONS.iter().find(|(mode, _)| *mode == name) {
        r.control("PP", []);
        r.text([
            roman("Reads "),
            roman(*reads),
            roman(" of the configuration file given with "),
            bold("--config"),
            roman("."),
        ]);
    }
    r.to_writer(w)?;
    let man = Man::new(sub.clone());
    // clap_mangen heads the options `.SH OPTIONS`; inside a mode's section they become a
    // subsection.
    let mut options = Vec::new();
    man.render_options_section(&mut options)?;
    let options = String::from_utf8_lossy(&options).replace(".SH OPTIONS\n", ".SS Options\n");
    w.write_all(options.as_bytes())
}

fn configuration(w: &mut dyn Write) -> std::io::Result<()> {
    let mut r = Roff::default();
    r.control("SH", ["CONFIGURATION"]);
    r.text([
        roman("Every mode takes "),
        bold("--config"),
        roman(" "),
        italic("FILE"),
        roman(
            ", a TOML file. Every flag has a key of the same name (kebab-case); a flag given on \
             the command line wins over the file, and the file over the built-in default. The \
             flags shared by the recording modes (output, window, sensor id, privacy, delivery) \
             are top-level keys; each mode's own flags are keys of its table: ",
        ),
        bold("[dnstap]"),
        roman(", "),
        bold("[capture]"),
        roman(", "),
        bold("[proxy]"),
        roman(" and "),
        bold("[collector]"),
        roman(
            ". An unknown key is an error, never ignored. The packages install an annotated \
             default as ",
        ),
        italic("/etc/dnsensor/dnsensor.toml"),
        roman("; check a file with "),
        bold("dnsensor check-config --config"),
        roman(" "),
        italic("FILE"),
        roman("."),
    ]);
    r.to_writer(w)
}

fn trailer(w: &mut dyn Write) -> std::io::Result<()> {
    let mut r = Roff::default();
    r.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/dnsensor/dnsensor.toml",
            "the configuration file, for every mode",
        ),
        (
            "/var/lib/dnsensor/spool",
            "sealed batches waiting for upload (--output collector)",
        ),
        (
            "/var/lib/dnsensor/records.json",
            "records, in the packaged configuration (--output file:PATH)",
        ),
        (
            "/run/dnsensor/dnstap.sock",
            "the dnstap socket resolvers connect to, mode 0660, group dnsensor",
        ),
    ] {
        r.control("TP", []);
        r.text([italic(path)]);
        r.text([roman(what)]);
    }
    r.control("SH", ["SYSTEMD UNITS"]);
    for (unit, what) in [
        ("dnsensor-dnstap.service", "dnsensor dnstap"),
        (
            "dnsensor-capture@IFACE.service",
            "dnsensor capture --interface IFACE, one instance per interface",
        ),
        ("dnsensor-proxy.service", "dnsensor proxy"),
        ("dnsensor-collector.service", "dnsensor collector"),
    ] {
        r.control("TP", []);
        r.text([bold(unit)]);
        r.text([roman(what)]);
    }
    r.control("PP", []);
    r.text([roman(
        "Each runs as the unprivileged user dnsensor with --config /etc/dnsensor/dnsensor.toml; \
         the proxy holds only CAP_NET_BIND_SERVICE and the capture only CAP_NET_RAW.",
    )]);
    r.control("SH", ["SIGNALS"]);
    r.text([
        bold("SIGTERM"),
        roman(" and "),
        bold("SIGINT"),
        roman(
            " flush the open window (sealing it as a batch with --output collector), give \
             uploads in flight a few seconds, log a one-line summary of the counters and exit.",
        ),
    ]);
    r.control("SH", ["EXIT STATUS"]);
    for (code, what) in [
        ("0", "success"),
        (
            "1",
            "the system refused something: a socket, a file, an interface, a user",
        ),
        (
            "2",
            "usage or configuration error, reported as one line naming the key",
        ),
    ] {
        r.control("TP", []);
        r.text([bold(code)]);
        r.text([roman(what)]);
    }
    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("systemctl"),
        roman("(1), "),
        bold("systemd.exec"),
        roman("(5), "),
        bold("unbound.conf"),
        roman("(5), "),
        bold("named.conf"),
        roman("(5), "),
        bold("pcap-filter"),
        roman("(7)"),
    ]);
    r.to_writer(w)
}
