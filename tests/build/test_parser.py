"""The Dockerfile parser against the examples of docker's Dockerfile reference."""

from __future__ import annotations

import pytest

from cais.image.build.instructions import (
    ArgCmd,
    CmdCmd,
    CopyCmd,
    EnvCmd,
    HealthcheckCmd,
    LabelCmd,
    OnbuildCmd,
    RunCmd,
    load,
    parse_duration,
)
from cais.image.build.parser import DockerfileError, parse


def nodes(text: str):
    return parse(text).nodes


def test_comments_blank_lines_and_case_insensitive_keywords():
    ns = nodes("# comment\n\n   # indented comment\nfrom busybox\n\trun echo hello # not a comment\n")
    assert [(n.keyword, n.args, n.line) for n in ns] == [
        ("FROM", ["busybox"], 4), ("RUN", ["echo hello # not a comment"], 5)]


def test_line_continuation_joins_lines_and_skips_comment_lines():
    ns = nodes("FROM busybox\nRUN /bin/bash -c 'source $HOME/.bashrc && \\\necho $HOME'\n"
               "RUN echo hello \\\n# comment\nworld\n")
    assert ns[1].args == ["/bin/bash -c 'source $HOME/.bashrc && echo $HOME'"]
    assert (ns[1].line, ns[1].end_line) == (2, 3)
    assert ns[2].args == ["echo hello world"]


def test_empty_continuation_line_is_a_warning():
    parsed = parse("FROM busybox\nRUN echo a \\\n\n  b\n")
    assert parsed.nodes[1].args == ["echo a   b"]
    assert parsed.warnings


def test_escape_directive_backtick():
    parsed = parse("# escape=`\n\nFROM microsoft/nanoserver\nCOPY testfile.txt c:\\\nRUN dir c:\\\n")
    assert parsed.directives.escape == "`"
    assert parsed.nodes[1].args == ["testfile.txt", "c:\\"]
    assert parsed.nodes[2].args == ["dir c:\\"]
    parsed = parse("# escape=`\nFROM busybox\nRUN echo a `\n  b\n")
    assert parsed.nodes[1].args == ["echo a   b"]


@pytest.mark.parametrize("text", ["#directive=value", "# directive =value", "#\tdirective= value",
                                  "# directive = value", "# dIrEcTiVe=value"])
def test_directive_whitespace_and_case(text):
    parsed = parse(text.replace("directive", "syntax").replace("dIrEcTiVe", "SyNtAx") + "\nFROM busybox\n")
    assert parsed.directives.syntax == "value"


def test_directives_only_at_the_top():
    assert parse("FROM busybox\n# escape=`\nRUN a \\\n b\n").directives.escape == "\\"
    assert parse("# unknowndirective=value\n# escape=`\nFROM busybox\n").directives.escape == "\\"
    assert parse("\n# escape=`\nFROM busybox\n").directives.escape == "\\"
    assert parse("# syntax=docker/dockerfile:1\n# check=skip=all\n# escape=`\nFROM x\n").directives.check == "skip=all"


def test_directive_errors():
    with pytest.raises(DockerfileError, match="only one escape parser directive"):
        parse("# escape=\\\n# escape=`\nFROM busybox\n")
    with pytest.raises(DockerfileError, match="invalid escape token"):
        parse("# escape=x\nFROM busybox\n")


def test_shell_and_exec_forms():
    ns = nodes('FROM busybox\nCMD ["/usr/bin/wc","--help"]\nCMD echo "This is a test." | wc -\n'
               'ENTRYPOINT ["top", "-b"] trailing\nRUN [ -f /x ] && echo yes\nVOLUME ["/data"]\nVOLUME /a /b\n')
    assert (ns[1].json, ns[1].args) == (True, ["/usr/bin/wc", "--help"])
    assert (ns[2].json, ns[2].args) == (False, ['echo "This is a test." | wc -'])
    assert (ns[3].json, ns[3].args) == (True, ["top", "-b"])
    assert (ns[4].json, ns[4].args) == (False, ["[ -f /x ] && echo yes"])
    assert ns[5].args == ["/data"] and ns[6].args == ["/a", "/b"]


def test_json_array_of_non_strings_is_an_error():
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: .*arrays must be comprised of strings only"):
        parse('FROM busybox\nCMD ["echo", 1]\n')


def test_env_both_forms_and_label():
    df = load('FROM busybox\nENV MY_NAME="John Doe"\nENV MY_DOG=Rex\\ The\\ Dog \\\n    MY_CAT=fluffy\n'
              'ENV MY_VAR my-value with spaces\nLABEL "com.example.vendor"="ACME Incorporated" version=1.0 '
              'description="This text illustrates \\\nthat label-values can span multiple lines."\n')
    env = [c for c in df.stages[0].commands if isinstance(c, EnvCmd)]
    assert env[0].pairs == [("MY_NAME", '"John Doe"')]
    assert env[1].pairs == [("MY_DOG", "Rex\\ The\\ Dog"), ("MY_CAT", "fluffy")]
    assert env[2].pairs == [("MY_VAR", "my-value with spaces")]
    label = df.stages[0].commands[-1]
    assert isinstance(label, LabelCmd)
    assert [k for k, _ in label.pairs] == ['"com.example.vendor"', "version", "description"]


def test_env_errors():
    with pytest.raises(DockerfileError, match="Dockerfile:2: ENV must have two arguments"):
        load("FROM busybox\nENV ONLYNAME\n")
    with pytest.raises(DockerfileError, match="can't find = in"):
        load("FROM busybox\nENV a=1 b\n")


def test_heredoc_run_forms():
    ns = nodes("FROM busybox\nRUN <<EOT bash\n  set -ex\n  apt-get update\nEOT\n"
               "RUN python3 <<EOF\nprint('hi')\nEOF\nRUN echo after\n")
    assert ns[1].args == ["<<EOT bash"]
    assert ns[1].heredocs[0].name == "EOT" and ns[1].heredocs[0].content == "  set -ex\n  apt-get update\n"
    assert (ns[1].line, ns[1].end_line) == (2, 5)
    assert ns[2].heredocs[0].content == "print('hi')\n"
    assert ns[3].args == ["echo after"] and ns[3].line == 9


def test_several_heredocs_chomp_and_quoted_delimiters():
    ns = nodes("FROM busybox\nRUN <<FILE1 cat > file1 && <<FILE2 cat > file2\nI am\nfirst\nFILE1\nI am\nsecond\nFILE2\n"
               "COPY <<-EOT /script.sh\n\techo \"hello world\"\n\tEOT\nCOPY <<'EOF' <<\"EOF2\" /dest/\n$x\nEOF\ny\nEOF2\n")
    assert [(h.name, h.content) for h in ns[1].heredocs] == [("FILE1", "I am\nfirst\n"), ("FILE2", "I am\nsecond\n")]
    doc = ns[2].heredocs[0]
    assert doc.chomp and doc.expand and doc.text == 'echo "hello world"\n'
    assert [(h.name, h.expand) for h in ns[3].heredocs] == [("EOF", False), ("EOF2", False)]
    assert ns[3].args == ["<<'EOF'", '<<"EOF2"', "/dest/"]


def test_unterminated_heredoc():
    with pytest.raises(DockerfileError, match="Dockerfile:2: unterminated heredoc 'EOF'"):
        parse("FROM busybox\nRUN <<EOF\necho hi\n")


def test_heredoc_only_on_run_copy_add():
    ns = nodes("FROM busybox\nCMD cat <<EOF\n")
    assert ns[1].heredocs == [] and ns[1].args == ["cat <<EOF"]


def test_flags():
    df = load("FROM --platform=linux/amd64 busybox AS Build\n"
              "COPY --from=build --chown=1:2 --chmod=0644 --link a b /dest/\n"
              "RUN --network=none --mount=type=cache,target=/c --mount=type=tmpfs,target=/t echo hi\n"
              "ADD --chown=\"a b\" x /y\n")
    stage = df.stages[0]
    assert (stage.name, stage.base, stage.platform) == ("build", "busybox", "linux/amd64")
    copy, run, add = stage.commands
    assert isinstance(copy, CopyCmd) and isinstance(run, RunCmd) and isinstance(add, CopyCmd)
    assert (copy.source_stage, copy.chown, copy.chmod, copy.link, copy.sources, copy.dest) == \
        ("build", "1:2", "0644", True, ["a", "b"], "/dest/")
    assert run.network == "none" and len(run.mounts) == 2 and run.args == ["echo hi"]
    assert add.add and add.chown == "a b"


@pytest.mark.parametrize("text, message", [
    ("FROM busybox\nCOPY --bogus=1 a b\n", "Dockerfile:2: unknown flag: bogus"),
    ("FROM busybox\nCOPY --from a b\n", "missing a value on flag: from"),
    ("FROM busybox\nCOPY --from=a --from=b a b\n", "duplicate flag specified: from"),
    ("FROM busybox\nCOPY --link=maybe a b\n", "expecting boolean value"),
    ("FROM busybox\nRUN --chown=1 echo\n", "unknown flag: chown"),
    ("FROM busybox\nCOPY onlyone\n", "COPY requires at least two arguments"),
    ("FROM busybox\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
    ("FROM busybox\nSHELL /bin/bash -c\n", "SHELL requires the arguments to be in JSON form"),
    ("FROM busybox\nWORKDIR\n", "WORKDIR requires exactly one argument"),
    ("FROM a b\n", "FROM requires either one or three arguments"),
    ("FROM a AS 1x\n", "invalid name for build stage"),
    ("FROM a AS x\nFROM b AS X\n", "Dockerfile:2: duplicate stage name 'x'"),
    ("RUN echo\nFROM busybox\n", "Dockerfile:1: RUN before the first FROM"),
    ("# only a comment\n", "no FROM instruction"),
    ("FROM busybox\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD"),
    ("FROM busybox\nONBUILD FROM x\n", "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM busybox\nONBUILD BOGUS x\n", "unknown instruction: BOGUS"),
    ("FROM busybox\nHEALTHCHECK --retries=-1 CMD true\n", "cannot be negative"),
    ("FROM busybox\nHEALTHCHECK FOO true\n", "Unknown type"),
    ("FROM busybox\nHEALTHCHECK --interval=1x CMD true\n", "invalid duration"),
])
def test_errors_name_file_line_and_problem(text, message):
    with pytest.raises(DockerfileError) as info:
        load(text, "Dockerfile")
    assert message in str(info.value)
    assert str(info.value).startswith("Dockerfile")


def test_arg_before_from_and_stages():
    df = load("ARG CODE_VERSION=latest\nARG A B=2\nFROM base:${CODE_VERSION}\nCMD /code/run-app\n"
              "FROM extras:${CODE_VERSION}\nARG CODE_VERSION\nCMD /code/run-extras\n")
    assert [a.args for a in df.meta_args] == [[("CODE_VERSION", "latest")], [("A", None), ("B", "2")]]
    assert [s.base for s in df.stages] == ["base:${CODE_VERSION}", "extras:${CODE_VERSION}"]
    assert isinstance(df.stages[1].commands[0], ArgCmd)
    assert df.stage("1") is df.stages[1] and df.stage("nope") is None


def test_healthcheck_and_onbuild():
    df = load("FROM busybox\nHEALTHCHECK --interval=5m --timeout=3s \\\n  CMD curl -f http://localhost/ || exit 1\n"
              "HEALTHCHECK NONE\nHEALTHCHECK --retries=3 CMD [\"/bin/check\", \"-q\"]\n"
              "ONBUILD ADD . /app/src\nonbuild run echo hi\n")
    h1, h2, h3, o1, o2 = df.stages[0].commands
    assert isinstance(h1, HealthcheckCmd) and h1.test == ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]
    assert (h1.interval, h1.timeout) == (300 * 10**9, 3 * 10**9)
    assert h2.test == ["NONE"] and h3.test == ["CMD", "/bin/check", "-q"] and h3.retries == 3
    assert isinstance(o1, OnbuildCmd) and o1.expression == "ADD . /app/src"
    assert o2.expression == "run echo hi"


def test_cmd_forms_typed():
    df = load('FROM busybox\nCMD ["a"]\nCMD b c\nCMD []\n')
    c1, c2, c3 = df.stages[0].commands
    assert isinstance(c1, CmdCmd) and (c1.args, c1.shell_form) == (["a"], False)
    assert (c2.args, c2.shell_form) == (["b c"], True)
    assert (c3.args, c3.shell_form) == ([], False)


def test_crlf_and_bom():
    ns = nodes("\ufeffFROM busybox\r\nRUN echo a \\\r\n  b\r\n")
    assert ns[0].args == ["busybox"] and ns[1].args == ["echo a   b"]


@pytest.mark.parametrize("text, ns", [("0", 0), ("30s", 30 * 10**9), ("1m30s", 90 * 10**9), ("1.5h", 5400 * 10**9),
                                      ("500ms", 500 * 10**6), ("10us", 10_000)])
def test_durations(text, ns):
    assert parse_duration(text) == ns
