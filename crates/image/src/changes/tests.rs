use super::*;

fn apply(config: &mut Config, changes: &[&str]) -> Result<(), ChangeError> {
    let changes: Vec<String> = changes.iter().map(|s| (*s).to_owned()).collect();
    apply_changes(config, &changes)
}

fn applied(changes: &[&str]) -> Config {
    let mut config = Config::default();
    apply(&mut config, changes).unwrap();
    config
}

fn err(changes: &[&str]) -> ChangeError {
    apply(&mut Config::default(), changes).unwrap_err()
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

#[test]
fn cmd_exec_and_shell_forms() {
    assert_eq!(
        applied(&[r#"CMD ["echo", "hi there"]"#]).cmd(),
        &strings(&["echo", "hi there"])
    );
    assert_eq!(
        applied(&["cmd echo $HOME"]).cmd(),
        &strings(&["/bin/sh", "-c", "echo $HOME"])
    );
    assert_eq!(applied(&["CMD []"]).cmd(), &strings(&[]));
    // Not a JSON array of strings: shell form, as Docker does.
    assert_eq!(
        applied(&["CMD [1, 2]"]).cmd(),
        &strings(&["/bin/sh", "-c", "[1, 2]"])
    );
    assert_eq!(
        applied(&["CMD [oops"]).cmd(),
        &strings(&["/bin/sh", "-c", "[oops"])
    );
}

#[test]
fn entrypoint_clears_cmd_unless_cmd_was_set_first() {
    let mut config = applied(&["CMD [\"a\"]"]);
    apply(&mut config, &["ENTRYPOINT [\"/init\"]"]).unwrap();
    assert_eq!(config.entrypoint(), &strings(&["/init"]));
    assert_eq!(config.cmd(), &None);

    let config = applied(&["CMD [\"a\"]", "Entrypoint /init --flag"]);
    assert_eq!(
        config.entrypoint(),
        &strings(&["/bin/sh", "-c", "/init --flag"])
    );
    assert_eq!(config.cmd(), &strings(&["a"]));
}

#[test]
fn env_forms_and_replacement() {
    let config = applied(&[
        "ENV A=1 B=\"v 2\" C='x y' D=a\\ b",
        "env LEGACY some value  here",
        "ENV A=3",
    ]);
    assert_eq!(
        config.env(),
        &strings(&["A=3", "B=v 2", "C=x y", "D=a b", "LEGACY=some value  here"])
    );
}

#[test]
fn env_quotes_escapes_and_substitution() {
    let mut config = Config::default();
    config.set_env(strings(&["PATH=/usr/bin", "EMPTY="]));
    apply(
        &mut config,
        &[
            "ENV PATH=$PATH:/opt/bin X=${PATH}",
            r#"ENV S='$PATH' Q="\"q\" \$ \\ \n" E=${EMPTY:-dflt}${EMPTY-no}${UNSET+no}${PATH:+yes}"#,
            "ENV LIT=$ NUM=$1x",
        ],
    )
    .unwrap();
    assert_eq!(
        config.env(),
        &strings(&[
            "PATH=/usr/bin:/opt/bin",
            "EMPTY=",
            // Substitution sees the environment from before the instruction.
            "X=/usr/bin",
            "S=$PATH",
            "Q=\"q\" $ \\ \\n",
            "E=dfltyes",
            "LIT=$",
            "NUM=x",
        ])
    );
}

#[test]
fn label() {
    let config = applied(&[
        "LABEL a=1 \"b c\"=\"d e\"",
        "label version 1.0 beta",
        "LABEL a=2",
    ]);
    let labels = config.labels().clone().unwrap();
    assert_eq!(labels.len(), 3);
    assert_eq!(labels["a"], "2");
    assert_eq!(labels["b c"], "d e");
    assert_eq!(labels["version"], "1.0 beta");
}

#[test]
fn workdir() {
    assert_eq!(
        applied(&["WORKDIR /app"]).working_dir(),
        &Some("/app".to_owned())
    );
    assert_eq!(
        applied(&["workdir /a//b/./c/../d/"]).working_dir(),
        &Some("/a/b/d".to_owned())
    );
    let mut config = Config::default();
    config.set_env(strings(&["BASE=/srv"]));
    apply(&mut config, &["WORKDIR $BASE/www"]).unwrap();
    assert_eq!(config.working_dir(), &Some("/srv/www".to_owned()));
}

#[test]
fn user() {
    assert_eq!(applied(&["USER nobody"]).user(), &Some("nobody".to_owned()));
    assert_eq!(
        applied(&["user 1000:1000"]).user(),
        &Some("1000:1000".to_owned())
    );
}

#[test]
fn expose() {
    let config = applied(&[
        "EXPOSE 80 80/tcp 53/udp 9/SCTP",
        "expose 8000-8002/tcp 443/",
    ]);
    assert_eq!(
        config.exposed_ports(),
        &strings(&["80/tcp", "53/udp", "9/sctp", "8000/tcp", "8001/tcp", "8002/tcp", "443/tcp"])
    );
}

#[test]
fn expose_large_range() {
    let config = applied(&["EXPOSE 1-65535/udp 80/udp"]);
    assert_eq!(config.exposed_ports().as_ref().map(Vec::len), Some(65535));
}

#[test]
fn stopsignal() {
    for signal in ["SIGTERM", "term", "9", "SIGRTMIN+3", "RTMAX-2", "sigusr1"] {
        let config = applied(&[format!("STOPSIGNAL {signal}").as_str()]);
        assert_eq!(config.stop_signal(), &Some(signal.to_owned()));
    }
}

#[test]
fn volume_json_and_words() {
    let config = applied(&[r#"VOLUME ["/data", "/with space"]"#, "volume /a /b /data"]);
    assert_eq!(
        config.volumes(),
        &strings(&["/data", "/with space", "/a", "/b"])
    );
}

#[test]
fn errors() {
    let cases: &[(&str, &str)] = &[
        ("  ", "empty instruction"),
        ("ENV A=1\nRUN x", "instruction spans several lines"),
        ("CMD", "CMD requires at least one argument"),
        ("ENTRYPOINT  ", "ENTRYPOINT requires at least one argument"),
        ("VOLUME []", "VOLUME requires at least one argument"),
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("ENV ONLY", "ENV ONLY has no value"),
        ("LABEL a=1 b", "\"b\" is not of the form name=value"),
        ("ENV =x", "ENV names can not be blank"),
        ("ENV A=\"open", "missing closing \" quote"),
        ("LABEL a='open", "missing closing ' quote"),
        ("ENV A=${B", "bad substitution: missing '}'"),
        ("ENV A=${}", "bad substitution: missing variable name"),
        ("ENV A=${B?x}", "bad substitution: unsupported modifier"),
        ("WORKDIR app", "WORKDIR \"app\" is not an absolute path"),
        ("EXPOSE 80 x/tcp", "invalid port \"x/tcp\""),
        ("STOPSIGNAL SIGNOPE", "invalid stop signal \"SIGNOPE\""),
        ("VOLUME [\"\"]", "VOLUME paths can not be empty"),
        (
            "FROM scratch",
            "instruction FROM is not supported (CMD, ENTRYPOINT, ENV, EXPOSE, \
                          LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR)",
        ),
        (
            "add a b",
            "instruction ADD is not supported (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, \
                     STOPSIGNAL, USER, VOLUME, WORKDIR)",
        ),
    ];
    for (change, want) in cases {
        let got = err(&[*change]).to_string();
        assert_eq!(got, format!("invalid --change {change:?}: {want}"));
    }
    // Variants carry their context as fields, not only in the message.
    assert_eq!(
        err(&["RUN x"]),
        ChangeError::Unsupported {
            change: "RUN x".into(),
            instruction: "RUN".into()
        }
    );
}

#[test]
fn invalid_ports_and_signals() {
    for port in [
        "0", "65536", "http", "80/icmp", "90-80", "1-", "8080:80", "-1", "",
    ] {
        assert!(parse_port_spec(port).is_none(), "port {port:?}");
    }
    for signal in ["0", "65", "RTMIN+31", "RTMAX-x", "SIG", ""] {
        assert!(!is_signal(signal), "signal {signal:?}");
    }
}

#[test]
fn stops_at_first_error_keeping_earlier_changes() {
    let mut config = Config::default();
    let e = apply(&mut config, &["USER a", "RUN x", "USER b"]).unwrap_err();
    assert!(matches!(e, ChangeError::Unsupported { .. }));
    assert_eq!(config.user(), &Some("a".to_owned()));
}

#[test]
fn split_words_keeps_quotes_for_expansion() {
    assert_eq!(
        split_words(r#"  a=1 b="x y"  c='p q' d=e\ f g=\"  "#),
        vec!["a=1", "b=\"x y\"", "c='p q'", "d=e\\ f", "g=\\\""]
    );
}
