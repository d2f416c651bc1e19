//! Reading the check and notify scripts of a keepalived setup — as text, never running them — for the
//! values whpg-ha needs: the data directory, port, database user, OS user, `greenplum_path.sh`, the
//! database host and the gateway they ping.
//!
//! The reading is deliberately shallow: shell variable assignments (`NAME=value`, `export NAME=value`)
//! with `$NAME` / `${NAME}` expanded from earlier assignments, and the arguments of the commands that
//! carry these values (`pg_isready -p`, `gpactivatestandby -d`, `pg_ctl -D`, `sudo -u`, `su - USER -c
//! "..."`, `source .../greenplum_path.sh`, `ping HOST`). Control flow is not followed; a value that
//! cannot be resolved from the text (`$1`, `$(...)`, `${HOME}`) is left out rather than guessed.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::keepalived::Loc;

/// What a value found in a script is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FactKind {
    DataDirectory,
    Port,
    User,
    OsUser,
    GreenplumPath,
    Host,
    Dbname,
    /// The probe's own timeout (`pg_isready -t N`), seconds.
    ProbeTimeout,
    Gateway,
    /// The directory of a database program called by its full path (`how` names the program).
    BinDir,
}

impl FactKind {
    pub fn describe(self) -> &'static str {
        match self {
            FactKind::DataDirectory => "data directory",
            FactKind::Port => "port",
            FactKind::User => "database user",
            FactKind::OsUser => "OS user",
            FactKind::GreenplumPath => "greenplum_path.sh",
            FactKind::Host => "database host",
            FactKind::Dbname => "database name",
            FactKind::ProbeTimeout => "probe timeout",
            FactKind::Gateway => "gateway",
            FactKind::BinDir => "program directory",
        }
    }
}

/// A value found in a script, with where and how it was found (`PGPORT=`, `pg_isready -p`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub kind: FactKind,
    pub value: String,
    pub loc: Loc,
    pub how: String,
}

impl Fact {
    /// How it was written: `PGPORT=5432`, `pg_isready -p 5432`.
    pub fn shown(&self) -> String {
        if self.how.ends_with('=') {
            format!("{}{}", self.how, self.value)
        } else {
            format!("{} {}", self.how, self.value)
        }
    }
}

/// Which database flavor the scripts point to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlavorHint {
    WarehousePg,
    Postgres,
}

/// Everything read from one script (or one `script "..."` command line).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptScan {
    pub facts: Vec<Fact>,
    /// Values still holding a template placeholder such as `<Gateway_IP>`.
    pub placeholders: Vec<Fact>,
    pub flavor_hints: Vec<(FlavorHint, Loc, String)>,
    /// The script probes the database (`pg_isready`, `psql`).
    pub probes_database: bool,
    /// The script pings a host.
    pub pings: bool,
}

impl ScriptScan {
    fn push(&mut self, kind: FactKind, value: String, loc: &Loc, how: impl Into<String>) {
        let fact = Fact {
            kind,
            value,
            loc: loc.clone(),
            how: how.into(),
        };
        if is_placeholder(&fact.value) {
            self.placeholders.push(fact);
        } else if !self.facts.contains(&fact) {
            self.facts.push(fact);
        }
    }

    fn hint(&mut self, hint: FlavorHint, loc: &Loc, why: &str) {
        self.flavor_hints.push((hint, loc.clone(), why.to_string()));
    }

    pub fn extend(&mut self, other: ScriptScan) {
        for f in other.facts {
            if !self.facts.contains(&f) {
                self.facts.push(f);
            }
        }
        self.placeholders.extend(other.placeholders);
        self.flavor_hints.extend(other.flavor_hints);
        self.probes_database |= other.probes_database;
        self.pings |= other.pings;
    }
}

/// A template value left unfilled, such as `<Gateway_IP>` or `<VIP/CIDR>`.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    v.len() > 2 && v.contains('<') && v.contains('>')
}

/// Reads a whole script. `file` names it in locations.
pub fn scan_script(text: &str, file: &str) -> ScriptScan {
    let file: std::sync::Arc<str> = std::sync::Arc::from(file);
    let mut scan = ScriptScan::default();
    let mut vars: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut pending = String::new();
    let mut start_line = 0u32;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start_line = i as u32 + 1;
        }
        if let Some(stripped) = raw.strip_suffix('\\') {
            pending.push_str(stripped);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let loc = Loc {
            file: file.clone(),
            line: start_line,
        };
        scan_line(&std::mem::take(&mut pending), &loc, &mut vars, &mut scan, 0);
    }
    scan
}

/// Reads one command line, e.g. the `script "..."` of a `vrrp_script`.
pub fn scan_command(line: &str, loc: &Loc) -> ScriptScan {
    let mut scan = ScriptScan::default();
    let mut vars = BTreeMap::new();
    scan_line(line, loc, &mut vars, &mut scan, 0);
    scan
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ShTok {
    Word(String),
    Sep,
}

/// Splits a shell line into words and command separators; `#` at the start of a word ends the line.
fn split_shell(line: &str) -> Vec<ShTok> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let flush = |out: &mut Vec<ShTok>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            out.push(ShTok::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                word.push(e);
                            }
                        }
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    word.push(e);
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                // A command substitution: its inside is a command of its own.
                chars.next();
                flush(&mut out, &mut word, &mut in_word);
                out.push(ShTok::Sep);
            }
            ';' | '|' | '&' | '<' | '>' | '(' | ')' | '`' => {
                flush(&mut out, &mut word, &mut in_word);
                out.push(ShTok::Sep);
            }
            c if c.is_whitespace() => flush(&mut out, &mut word, &mut in_word),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    flush(&mut out, &mut word, &mut in_word);
    out
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` replaced from `vars`; `None` when something cannot be
/// resolved from the text alone.
fn expand(word: &str, vars: &BTreeMap<String, Option<String>>) -> Option<String> {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let (name, default) = if chars.peek() == Some(&'{') {
            chars.next();
            let mut inner = String::new();
            let mut closed = false;
            for n in chars.by_ref() {
                if n == '}' {
                    closed = true;
                    break;
                }
                inner.push(n);
            }
            if !closed {
                return None;
            }
            match inner.split_once(":-") {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (inner, None),
            }
        } else {
            let mut name = String::new();
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                // `$?`, `$1`'s digit is alphanumeric; a lone `$` stays literal.
                match chars.peek() {
                    Some(_) => return None,
                    None => {
                        out.push('$');
                        continue;
                    }
                }
            }
            (name, None)
        };
        match (vars.get(&name), default) {
            (Some(Some(v)), _) => out.push_str(v),
            (_, Some(d)) if !d.contains('$') => out.push_str(&d),
            _ => return None,
        }
    }
    Some(out)
}

fn basename(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

fn assignment(word: &str) -> Option<(&str, &str)> {
    let (name, value) = word.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Some((name, value))
    } else {
        None
    }
}

/// The variable names whose value is one of the facts.
fn variable_kind(name: &str) -> Option<FactKind> {
    Some(match name {
        "COORDINATOR_DATA_DIRECTORY"
        | "MASTER_DATA_DIRECTORY"
        | "COORDINATOR_DATA_DIR"
        | "MASTER_DATA_DIR"
        | "PGDATA" => FactKind::DataDirectory,
        "PGPORT" | "DB_PORT" => FactKind::Port,
        "DB_USER" | "PGUSER" => FactKind::User,
        "DB_HOST" | "PGHOST" => FactKind::Host,
        "PGDATABASE" | "DB_NAME" => FactKind::Dbname,
        "GP_PATH_SCRIPT" | "GREENPLUM_PATH" => FactKind::GreenplumPath,
        n if n.contains("GATEWAY") || n == "GW" || n == "GW_IP" => FactKind::Gateway,
        _ => return None,
    })
}

const MAX_NESTING: usize = 4;

fn scan_line(
    line: &str,
    loc: &Loc,
    vars: &mut BTreeMap<String, Option<String>>,
    scan: &mut ScriptScan,
    depth: usize,
) {
    let toks = split_shell(line);
    // Split into simple commands.
    let mut commands: Vec<Vec<String>> = vec![Vec::new()];
    for t in toks {
        match t {
            ShTok::Sep => commands.push(Vec::new()),
            ShTok::Word(w) => commands.last_mut().map(|c| c.push(w)).unwrap_or(()),
        }
    }
    for raw in commands.into_iter().filter(|c| !c.is_empty()) {
        // Leading assignments (and `export`/`local`/... in front of them) set variables.
        let mut rest = raw.as_slice();
        while let Some(first) = rest.first() {
            if matches!(
                first.as_str(),
                "export" | "local" | "readonly" | "declare" | "typeset" | "-x" | "-r"
            ) {
                rest = &rest[1..];
                continue;
            }
            let Some((name, value)) = assignment(first) else {
                break;
            };
            let expanded = expand(value, vars);
            if let (Some(kind), Some(v)) = (variable_kind(name), expanded.as_ref()) {
                if !v.is_empty() {
                    scan.push(kind, v.clone(), loc, format!("{name}="));
                }
            }
            if let Some(v) = &expanded {
                if v.ends_with("/greenplum_path.sh") && variable_kind(name).is_none() {
                    scan.push(FactKind::GreenplumPath, v.clone(), loc, format!("{name}="));
                }
                if matches!(
                    name,
                    "COORDINATOR_DATA_DIRECTORY" | "MASTER_DATA_DIRECTORY" | "GP_PATH_SCRIPT"
                ) {
                    scan.hint(FlavorHint::WarehousePg, loc, name);
                }
            }
            vars.insert(name.to_string(), expanded);
            rest = &rest[1..];
        }
        let words: Vec<Option<String>> = rest.iter().map(|w| expand(w, vars)).collect();
        for i in 0..words.len() {
            let Some(cmd) = &words[i] else { continue };
            let name = basename(cmd);
            if matches!(
                name,
                "pg_ctl" | "gpactivatestandby" | "pg_isready" | "psql" | "pg_basebackup"
            ) {
                if let Some((dir, _)) = cmd.rsplit_once('/').filter(|(d, _)| d.starts_with('/')) {
                    scan.push(FactKind::BinDir, dir.to_string(), loc, name.to_string());
                }
            }
            command(name, &words[i + 1..], loc, vars, scan, depth);
        }
    }
}

/// Interprets the arguments of one known command.
fn command(
    name: &str,
    args: &[Option<String>],
    loc: &Loc,
    vars: &mut BTreeMap<String, Option<String>>,
    scan: &mut ScriptScan,
    depth: usize,
) {
    let arg = |i: usize| args.get(i).and_then(|a| a.clone());
    match name {
        "pg_isready" | "psql" => {
            scan.probes_database = true;
            let mut i = 0;
            while i < args.len() {
                let Some(a) = &args[i] else {
                    i += 1;
                    continue;
                };
                let (flag, value, step) = option_value(a, arg(i + 1));
                let kind = match flag.as_str() {
                    "-h" | "--host" => Some(FactKind::Host),
                    "-p" | "--port" => Some(FactKind::Port),
                    "-U" | "--username" => Some(FactKind::User),
                    "-d" | "--dbname" => Some(FactKind::Dbname),
                    "-t" | "--timeout" if name == "pg_isready" => Some(FactKind::ProbeTimeout),
                    _ => None,
                };
                match (kind, value) {
                    (Some(kind), Some(v)) => {
                        scan.push(kind, v, loc, format!("{name} {flag}"));
                        i += step;
                    }
                    _ => i += 1,
                }
            }
        }
        "gpactivatestandby" | "gpinitstandby" | "gpstart" | "gpstop" | "gpstate" => {
            scan.hint(FlavorHint::WarehousePg, loc, name);
            let mut i = 0;
            while i < args.len() {
                if let Some(a) = &args[i] {
                    let (flag, value, step) = option_value(a, arg(i + 1));
                    if flag == "-d" {
                        if let Some(v) = value {
                            scan.push(FactKind::DataDirectory, v, loc, format!("{name} -d"));
                            i += step;
                            continue;
                        }
                    }
                }
                i += 1;
            }
        }
        "pg_ctl" => {
            let mut i = 0;
            while i < args.len() {
                if let Some(a) = &args[i] {
                    if a == "promote" {
                        scan.hint(FlavorHint::Postgres, loc, "pg_ctl promote");
                    }
                    let (flag, value, step) = option_value(a, arg(i + 1));
                    if flag == "-D" || flag == "--pgdata" {
                        if let Some(v) = value {
                            scan.push(FactKind::DataDirectory, v, loc, "pg_ctl -D");
                            i += step;
                            continue;
                        }
                    }
                }
                i += 1;
            }
        }
        "pg_ctlcluster" | "pg_promote" | "repmgr" | "patronictl" => {
            scan.hint(FlavorHint::Postgres, loc, name);
        }
        "source" | "." => {
            if let Some(path) = arg(0) {
                if path.ends_with("greenplum_path.sh") {
                    scan.push(FactKind::GreenplumPath, path, loc, name.to_string());
                    scan.hint(FlavorHint::WarehousePg, loc, "greenplum_path.sh");
                }
            }
        }
        "sudo" => {
            let mut i = 0;
            while let Some(Some(a)) = args.get(i) {
                if !a.starts_with('-') {
                    break;
                }
                let user = if a == "-u" || (a.len() <= 4 && a.starts_with('-') && a.ends_with('u'))
                {
                    i += 1;
                    arg(i)
                } else if let Some(u) = a.strip_prefix("--user=") {
                    Some(u.to_string())
                } else {
                    a.strip_prefix("-u").map(str::to_string)
                };
                if let Some(u) = user {
                    scan.push(FactKind::OsUser, u, loc, "sudo -u");
                }
                i += 1;
            }
        }
        "su" | "runuser" => {
            let mut i = 0;
            let mut user = None;
            while i < args.len() {
                let Some(a) = &args[i] else {
                    i += 1;
                    continue;
                };
                match a.as_str() {
                    "-" | "-l" | "--login" | "-m" | "-p" => {}
                    "-u" if name == "runuser" => {
                        i += 1;
                        user = arg(i);
                        break;
                    }
                    "-s" | "--shell" | "-g" | "-G" => i += 1,
                    "-c" | "--command" => {
                        i += 1;
                        if let Some(inner) = arg(i) {
                            nested(&inner, loc, vars, scan, depth);
                        }
                    }
                    other if !other.starts_with('-') && user.is_none() => {
                        user = Some(other.to_string());
                    }
                    _ => {}
                }
                i += 1;
            }
            if let Some(u) = user {
                scan.push(FactKind::OsUser, u, loc, format!("{name} USER"));
            }
        }
        "bash" | "sh" => {
            if let Some(pos) = args.iter().position(|a| a.as_deref() == Some("-c")) {
                if let Some(inner) = arg(pos + 1) {
                    nested(&inner, loc, vars, scan, depth);
                }
            }
        }
        "ping" | "fping" => {
            scan.pings = true;
            let mut i = 0;
            while i < args.len() {
                let Some(a) = &args[i] else {
                    // An unresolved target (`"$1"`) or option value.
                    i += 1;
                    continue;
                };
                if a.starts_with('-') {
                    // Options that take a value (iputils ping and fping).
                    let takes_value = matches!(
                        a.as_str(),
                        "-c" | "-W"
                            | "-w"
                            | "-i"
                            | "-I"
                            | "-s"
                            | "-t"
                            | "-Q"
                            | "-l"
                            | "-p"
                            | "-M"
                            | "-m"
                            | "-T"
                            | "-S"
                            | "-r"
                            | "-b"
                            | "-B"
                            | "-C"
                            | "-O"
                            | "-H"
                            | "-P"
                    );
                    i += if takes_value { 2 } else { 1 };
                    continue;
                }
                if a.parse::<Ipv4Addr>().is_ok() || is_placeholder(a) {
                    scan.push(FactKind::Gateway, a.clone(), loc, name.to_string());
                }
                i += 1;
            }
        }
        _ => {}
    }
}

fn nested(
    inner: &str,
    loc: &Loc,
    vars: &mut BTreeMap<String, Option<String>>,
    scan: &mut ScriptScan,
    depth: usize,
) {
    if depth < MAX_NESTING {
        scan_line(inner, loc, vars, scan, depth + 1);
    }
}

/// `-p 5432`, `-p5432`, `--port=5432`, `--port 5432` → (flag, value, words used).
fn option_value(word: &str, next: Option<String>) -> (String, Option<String>, usize) {
    if let Some(long) = word.strip_prefix("--") {
        return match long.split_once('=') {
            Some((f, v)) => (format!("--{f}"), Some(v.to_string()), 1),
            None => (word.to_string(), next, 2),
        };
    }
    if word.starts_with('-') && word.len() > 2 && word.is_char_boundary(2) {
        return (word[..2].to_string(), Some(word[2..].to_string()), 1);
    }
    (word.to_string(), next, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(scan: &ScriptScan, kind: FactKind) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in scan.facts.iter().filter(|f| f.kind == kind) {
            if !out.contains(&f.value) {
                out.push(f.value.clone());
            }
        }
        out
    }

    #[test]
    fn assignments_and_pg_isready_arguments() {
        let text = "#!/bin/bash\nDB_HOST=\"127.0.0.1\"   # local\nDB_PORT=\"5433\"\nDB_USER=gpadmin\nRC=`sudo -u gpadmin -i /usr/local/greenplum-db/bin/pg_isready -h \"$DB_HOST\" -d postgres -p \"$DB_PORT\" -U $DB_USER -t 1`\n";
        let s = scan_script(text, "check.sh");
        assert_eq!(values(&s, FactKind::Port), ["5433"]);
        assert_eq!(values(&s, FactKind::Host), ["127.0.0.1"]);
        assert_eq!(values(&s, FactKind::User), ["gpadmin"]);
        assert_eq!(values(&s, FactKind::OsUser), ["gpadmin"]);
        assert_eq!(values(&s, FactKind::Dbname), ["postgres"]);
        assert_eq!(values(&s, FactKind::ProbeTimeout), ["1"]);
        assert!(s.probes_database);
        let port = s.facts.iter().find(|f| f.how == "DB_PORT=").unwrap();
        assert_eq!(port.loc.to_string(), "check.sh:3");
    }

    #[test]
    fn data_directory_from_export_and_su_command() {
        let text = "export COORDINATOR_DATA_DIRECTORY=/data/coordinator/gpseg-1\nGP_PATH_SCRIPT=\"/opt/gp/greenplum_path.sh\"\nsource \"$GP_PATH_SCRIPT\"\nsu - gpadmin -c \"pg_ctl stop -m immediate -D $COORDINATOR_DATA_DIRECTORY\" >> \"$LOG\" 2>&1\n";
        let s = scan_script(text, "n.sh");
        assert_eq!(
            values(&s, FactKind::DataDirectory),
            ["/data/coordinator/gpseg-1"]
        );
        assert_eq!(
            values(&s, FactKind::GreenplumPath),
            ["/opt/gp/greenplum_path.sh"]
        );
        assert_eq!(values(&s, FactKind::OsUser), ["gpadmin"]);
        assert!(s
            .flavor_hints
            .iter()
            .all(|(h, _, _)| *h == FlavorHint::WarehousePg));
    }

    #[test]
    fn gateway_ping_and_placeholders() {
        let s = scan_command("/bin/ping -c 2 -W 1 192.168.10.1", &loc());
        assert_eq!(values(&s, FactKind::Gateway), ["192.168.10.1"]);
        assert!(s.pings);
        let t = scan_script(
            "GATEWAY_IP=\"<Gateway_IP>\"\nping -c 2 -W 1 \"$GATEWAY_IP\" > /dev/null 2>&1\n",
            "x.sh",
        );
        assert!(values(&t, FactKind::Gateway).is_empty());
        assert_eq!(t.placeholders.len(), 2);
        let u = scan_script("GW=10.1.1.254\nping -c1 $GW || exit 1\n", "y.sh");
        assert_eq!(values(&u, FactKind::Gateway), ["10.1.1.254"]);
    }

    #[test]
    fn unresolved_values_are_left_out() {
        let text = "PGPORT=$1\nLOG_DIR=\"${HOME}/gpAdminLogs\"\npg_isready -p \"$PGPORT\"\nSTATE=\"${1:-MASTER}\"\n";
        let s = scan_script(text, "z.sh");
        assert!(values(&s, FactKind::Port).is_empty(), "{:?}", s.facts);
    }

    #[test]
    fn comments_are_ignored() {
        let s = scan_script(
            "# PGPORT=1111\n#RET=`pg_isready -p 2222`\nPGPORT=5432 # not 3333\n",
            "c.sh",
        );
        assert_eq!(values(&s, FactKind::Port), ["5432"]);
    }

    #[test]
    fn postgres_hint() {
        let s = scan_script(
            "PGDATA=/var/lib/postgresql/15/main\npg_ctl promote -D \"$PGDATA\"\n",
            "p.sh",
        );
        assert_eq!(
            values(&s, FactKind::DataDirectory),
            ["/var/lib/postgresql/15/main"]
        );
        assert!(s
            .flavor_hints
            .iter()
            .any(|(h, _, _)| *h == FlavorHint::Postgres));
    }

    fn loc() -> Loc {
        Loc {
            file: std::sync::Arc::from("k.conf"),
            line: 3,
        }
    }
}
