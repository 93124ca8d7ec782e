"""Answers checked against their sources (rag_app.support): key content, re-citing, unsupported claims, evidence."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import build_index

from rag_app.config import load_settings
from rag_app.pipeline import RagPipeline
from rag_app.support import SupportChecker, key_content, question_content


@dataclass
class Src:
    text: str
    location: str = "doc.txt"


LORA = Src("RoBERTa base with LoRA trains 0.8M parameters; full fine-tuning trains all of them.", "lora.pdf p. 7")
APOLLO = Src("The Apollo 1 fire broke out during a launch rehearsal at Cape Kennedy.", "apollo.md")
CREW = Src("It killed the crew. Command pilot Grissom, senior pilot White and pilot Chaffee died on January 27, 1967.",
           "crew.md")


def check(reply, sources, question=""):
    return SupportChecker(sources, question).check(reply)


def test_a_number_the_cited_source_does_not_hold_is_flagged():
    result = check("125M [1]", [LORA], "How many trainable parameters does RoBERTa base LoRA have?")
    assert [(c.claim, c.missing) for c in result.unsupported] == [("125M", ["125M"])]
    assert result.text == "125M [1]" and result.recited == []  # no shown source has it: nothing to re-cite to
    assert "'125M'" in result.unsupported[0].warning()


@pytest.mark.parametrize("reply", ["0.8M [1]", "0.8 M [1]", "0,8 million [1]", "about 0.80M [1]"])
def test_the_same_number_written_another_way_is_found(reply):
    result = check(reply, [LORA], "How many trainable parameters does RoBERTa base LoRA have?")
    assert result.unsupported == [] and result.evidence[0].sentence.startswith("RoBERTa base with LoRA trains 0.8M")


@pytest.mark.parametrize(("reply", "source", "found"), [
    ("13527 people [1]", "The population was 13,527 in 2010.", True),
    ("13\u202f527 people [1]", "The population was 13\u00a0527 in 2010.", True),  # narrow and no-break spaces
    ("308 people [1]", "The population was 1308 in 2010.", False),  # whole numbers only
    ("10.8% [1]", "Growth was 0.8%.", False),
    ("12% [1]", "Growth was 12 percent.", True),
    ("125M [1]", "It has 125 parameters.", False),  # a magnitude the source does not write is not the same number
    ("125 [1]", "It has 125M parameters.", True),
    ("COVID\u201319 [1]", "Cases of COVID-19 rose.", True),
])
def test_numbers_are_compared_as_values(reply, source, found):
    assert (check(reply, [Src(source)]).unsupported == []) is found


def test_names_in_another_shown_source_are_recited_there_and_the_evidence_points_at_them():
    result = check("Grissom, White and Chaffee [1].", [APOLLO, CREW], "Who died in the Apollo 1 fire?")
    assert result.text == "Grissom, White and Chaffee [2]."
    assert [(r.cited, r.to) for r in result.recited] == [([1], [2])] and result.unsupported == []
    (ev,) = result.evidence
    assert ev.citation == 2 and ev.source == "crew.md"
    assert ev.sentence == CREW.text[ev.start:ev.end] and ev.sentence.startswith("Command pilot Grissom")
    assert [CREW.text[s:e] for s, e in ev.highlights] == ["Grissom", "White", "Chaffee"]


def test_a_claim_split_over_two_sources_cites_both():
    result = check("Grissom died at Cape Kennedy [1].", [APOLLO, CREW], "Where did he die?")
    assert result.text == "Grissom died at Cape Kennedy [1, 2]." and result.unsupported == []


def test_a_name_is_its_words_side_by_side_not_words_from_two_names():
    sources = [Src("He was the son of Edward Stafford and Mary Stanley."), Src("His grandmother was Ursula Pole.")]
    result = check("Mary Pole [1]", sources, "Who was his mother?")
    assert [c.missing for c in result.unsupported] == [["Mary Pole"]]
    assert check("Mary Stanley [2]", sources, "Who was his mother?").text == "Mary Stanley [1]"


# ---------------------------------------------------------------- replies that add nothing to the question

LIBFFI = Src("libffi is not completely thread-safe. Closures are allocated with ffi_closure_alloc.", "threads.html")
MIME = Src("The shared MIME database does not store user preferences such as a preferred application.", "mime.pdf p. 3")
CLIPPY = Src("The restriction category should not be enabled as a whole; pick lints from it.", "clippy.md")


def test_a_yes_citing_a_source_about_something_else_is_recited_to_the_one_about_the_question():
    question = "Does the shared MIME database store user preferences?"
    result = check("No [1]", [LIBFFI, MIME], question)
    assert result.text == "No [2]" and result.unsupported == []
    assert [(r.cited, r.to, r.asked) for r in result.recited] == [([1], [2], True)]
    assert result.recited[0].note() == ('cited [2] instead of [1]: "No" answers the question, and what it asks '
                                        "about is in that source")
    (ev,) = result.evidence
    assert ev.citation == 2 and ev.sentence == MIME.text


def test_a_yes_about_a_name_no_source_mentions_is_unsupported():
    result = check("Yes [1]", [LIBFFI, CLIPPY], "Is Kyoto the capital of Japan?")
    assert result.text == "Yes [1]" and result.recited == []
    assert [(c.claim, c.missing, c.asked) for c in result.unsupported] == [("Yes", ["Kyoto", "Japan"], True)]
    assert result.unsupported[0].warning() == ("'Kyoto', 'Japan' (asked about; \"Yes\" answers it, citing [1]) is in "
                                               "none of the sources shown: check it before relying on it")


@pytest.mark.parametrize("question, word", [
    ("Which asn1Parser option checks the syntax only?", "which"),
    ("How many keys does querystring.parse() read by default?", "how"),
    ("On which platform can ffi_prep_cif change the size of long double?", "which"),  # after a preposition
    ("With --check, which exit code does asn1Parser return?", "which"),  # after an opening phrase
])
def test_a_bare_yes_to_a_question_that_asks_for_something_else_is_marked(question, word):
    result = check("Yes [1]", [LIBFFI, MIME], question)
    (claim,) = result.unsupported
    assert claim.open_question == word and result.recited == []
    assert claim.warning() == f'"Yes" (citing [1]) does not answer a "{word}" question: check it before relying on it'
    assert not any(c.open_question for c in check("Yes [1]", [LIBFFI, MIME], "Is libffi completely thread-safe?").unsupported)


@pytest.mark.parametrize("question, reply", [
    ("When libffi is built, is it completely thread-safe?", "Yes [1]"),      # a yes/no question after a clause
    ("What about libffi: is it completely thread-safe?", "No, it is not [1]"),
    ("Which is true of libffi, yes or no: it is thread-safe?", "No [1]"),
    ("Which database stores user preferences?", "No database stores user preferences [2]"),  # "No" as a word
    ("Which asn1Parser option checks the syntax only?", "Yes [1]. The --check option does [1]."),  # answered after
    ("Does libffi, which is portable, stay completely thread-safe?", "Yes [1]"),  # "which" of a clause in a yes/no one
    ("In libffi, is it completely thread-safe?", "Yes [1]"),
])
def test_a_yes_or_no_that_answers_the_question_is_not_marked_as_not_answering_it(question, reply):
    assert not any(c.open_question for c in check(reply, [LIBFFI, MIME], question).unsupported)


@pytest.mark.parametrize("question, reply", [("Is the Eiffel Tower in Lyon?", "No [1]."),
                                             ("Was the Eiffel Tower completed in 1900?", "No, it was not [1]"),
                                             ("Is the Eiffel Tower in Berlin?", "No [1]")])
def test_a_no_denies_the_question_so_its_source_need_not_hold_the_question_words(question, reply):
    sources = [Src("The Eiffel Tower in Paris was completed in 1889."), Src("The Brandenburg Gate stands in Berlin.")]
    result = check(reply, sources, question)
    assert result.text == reply and result.unsupported == [] and result.recited == []


@pytest.mark.parametrize("reply", ["No [1].", "No, it is not [1]", "It is [1]."])
def test_a_reply_citing_the_source_about_the_question_is_left_alone(reply):
    result = check(reply, [LIBFFI, MIME, CLIPPY], "Is libffi completely thread-safe?")
    assert result.text == reply and result.unsupported == [] and result.recited == []
    assert [e.citation for e in result.evidence] == [1]


@pytest.mark.parametrize("reply", ["Yes [1]", "Yes, it is [1]."])
def test_a_yes_that_the_cited_source_says_the_opposite_of_is_marked_with_that_sentence(reply):
    result = check(reply, [LIBFFI, MIME, CLIPPY], "Is libffi completely thread-safe?")
    (claim,) = result.unsupported
    assert claim.contradicted_by == "libffi is not completely thread-safe." and claim.cited == [1]
    assert claim.warning() == (f'"{reply.split(" [")[0]}" (citing [1]), but the cited source says: "libffi is not '
                               'completely thread-safe.": check it before relying on it')
    assert result.text == reply  # shown with the warning, not withheld


def test_a_yes_is_marked_where_the_question_words_the_cited_source_lacks_are_in_another_source():
    # "such as a user's preferred application" is the asker's example: only source 2 holds it, so source 1's
    # "NOT intended to store user preferences" holds under 0.4 of all the question's weight, but most of its own
    case = json.loads((Path(__file__).parents[1] / "data" / "support" / "mime-preferences.json").read_text())
    (claim,) = check("Yes [1]", [Src(t) for t in case["sources"]], case["question"]).unsupported
    assert claim.contradicted_by == "The MIME database is NOT intended to store user preferences."


@pytest.mark.parametrize("question, sources", [
    # the source agrees
    ("Is libffi completely thread-safe?", [Src("Since 3.3, libffi is completely thread-safe.")]),
    # the question itself is negated: "Yes" agrees with "not"
    ("Is libffi not completely thread-safe?", [LIBFFI]),
    # the negated sentence is about something else than what was asked
    ("Is libffi completely thread-safe?", [Src("libffi is completely thread-safe. It does not need a lock.")]),
    # one of the cited sources says yes
    ("Is libffi completely thread-safe?", [LIBFFI, Src("Since 3.3, libffi is completely thread-safe.")]),
])
def test_a_yes_is_not_marked_as_contradicted_where_no_cited_source_says_otherwise(question, sources):
    reply = "Yes " + "".join(f"[{n}]" for n in range(1, len(sources) + 1))
    assert [c for c in check(reply, sources, question).unsupported if c.contradicted_by] == []


USERS = Src("operator: Historically, the operator user account was used to dump backups to tape. In Debian, the "
            "operator user is no longer created by default. It had uid 37.\n"
            "list: Mailing list archives and data for mailing list managers.\n"
            "gnats: Used by gnats. This user and group are no longer created by default; they had uid/gid 41.",
            "users-and-groups.html")


# Other passages of the same page, as retrieval shows them: they share its words, not "operator".
PAGE = [Src("Debian allocates the uid of each static system user in base-passwd.", "users-and-groups.html"),
        Src("A Debian user with uid 1000 is the first created by the installer.", "users-and-groups.html"),
        Src("Dynamic system users get a uid from the range in adduser.conf on Debian.", "users-and-groups.html")]


def test_a_short_answer_from_where_the_source_speaks_of_something_else_is_marked():
    question = "What uid did the operator user have on Debian?"
    (claim,) = check("41 [1]", [USERS, *PAGE], question).unsupported
    assert claim.far_from[0] == "operator" and claim.cited == [1]
    assert claim.warning().startswith('"41" is in [1], but not where it speaks of \'operator\'')
    assert check("37 [1]", [USERS, *PAGE], question).unsupported == []
    assert check("It had uid 37 [1].", [USERS, *PAGE], question).unsupported == []
    # a number from a source that never speaks of operator, while source 1 gives operator's: marked too
    assert [c.far_from[0] for c in check("1000 [3]", [USERS, *PAGE], question).unsupported] == ["operator"]
    # what it answers may follow the answer
    after = Src("Static ids are fixed. Its uid was 37. That was the operator user on Debian.", "ids.md")
    assert check("37 [1]", [after, *PAGE], question).unsupported == []


def test_a_number_from_a_source_about_something_else_is_marked_where_another_gives_one_for_what_was_asked():
    operator, gnats = USERS.text.split("\nlist:")
    shown = [Src(operator, "users.html"), Src("list:" + gnats, "users.html"), *PAGE]
    (claim,) = check("41 [2]", shown, "What uid did the operator user have on Debian?").unsupported
    assert claim.far_from[0] == "operator" and claim.cited == [2]
    assert check("37 [1]", shown, "What uid did the operator user have on Debian?").unsupported == []
    # no other number beside what was asked: the cited source may name its subject elsewhere, as the crew's does
    assert check("1967 [2]", [APOLLO, CREW], "When did the Apollo 1 fire kill its crew?").unsupported == []


def test_only_numbers_and_code_are_judged_by_where_they_stand_not_names_or_phrases():
    # a name may be the bridge of a two-step answer, a phrase the source's own wording of the question
    question = "Which user had uid 41 on Debian?"
    assert check("mailing list archives [1]", [USERS, *PAGE], question).unsupported == []
    cli = Src("Options:\n`--keep` keeps the downloaded source after installation.\n`--verbose` prints every compile "
              "step.\n`--patch` applies a patch from stdin.\n`--version` shows the version.", "python-build.md")
    flag = "Which flag keeps the downloaded source after installation?"
    assert check("`--keep` [1]", [cli], flag).unsupported == []
    for reply in ("`--version` [1]", "--version [1]"):  # code-like with or without backticks
        (claim,) = check(reply, [cli], flag).unsupported
        assert claim.far_from and set(claim.far_from) <= {"keeps", "downloaded", "source", "installation"}


def test_a_number_far_from_the_question_is_recited_to_the_source_that_gives_it_where_it_speaks_of_it():
    readme = [Src("When running with `--check`, Rustfmt will exit with `0` if it would not make any formatting changes, "
                  "and `1` if Rustfmt would make changes.", "rustfmt.md § Verifying"),
              Src("Some code need not even compile. Post-1.0, the formatting of most code should not change.",
                  "rustfmt.md § Limitations")]
    question = "With --check, which exit code does rustfmt return if it would make formatting changes?"
    result = check("1 [2]", readme, question)
    assert result.text == "1 [1]" and result.unsupported == []
    assert [(r.cited, r.to) for r in result.recited] == [([2], [1])]
    # where no shown source gives it beside the question, the far mark stays
    without = [Src("When running with `--check`, Rustfmt will exit with `0` if it would not make any formatting "
                   "changes.", "rustfmt.md § Verifying"), readme[1]]
    (claim,) = check("1 [2]", without, question).unsupported
    assert claim.far_from and claim.cited == [2]


LICENCE = Src("Anybody can redistribute the library under the terms of the GNU Lesser General Public License version "
              "2.1 or later. The command line tools are licensed under the GNU General Public License version 3.0 or "
              "later.", "libtasn1.pdf p. 4")


def test_a_number_and_a_name_the_source_writes_in_different_sentences_are_marked():
    question = "Under which licence can the Libtasn1 library itself be used and redistributed?"
    (claim,) = check("GNU Lesser General Public License version 3.0 or later [1]", [LICENCE], question).unsupported
    assert claim.apart == ("3.0", "GNU Lesser General Public License")
    assert "the source gives '3.0', but not where it writes 'GNU Lesser General Public License'" in claim.warning()
    assert check("GNU Lesser General Public License version 2.1 or later [1]", [LICENCE], question).unsupported == []
    # drawn from two sources, a claim is not judged by either alone
    parts = [Src("The GNU Lesser General Public License covers the library."), Src("Its version is 2.1.")]
    assert check("GNU Lesser General Public License 2.1 [1][2]", parts, question).unsupported == []


COREPACK = Src("Corepack reads the `packageManager` field of your project's package.json to pick the package "
               "manager and its version.", "corepack.md")


@pytest.mark.parametrize("reply", ["package.json [1]", "`package.json` [1].", "The package.json [1]"])
def test_a_reply_naming_only_the_code_the_question_names_is_marked_as_not_answering_it(reply):
    question = "Which package.json property does Corepack read to find the package manager?"
    (claim,) = check(reply, [COREPACK], question).unsupported
    assert claim.echoes and claim.open_question == "which"
    assert "which the question names itself, does not answer a \"which\" question" in claim.warning()


@pytest.mark.parametrize("question, reply", [
    ("Which package.json property does Corepack read to find the package manager?", "`packageManager` [1]"),
    ("Which package.json property does Corepack read?", "packageManager, in package.json [1]"),  # names something new
    ("Does Corepack read package.json?", "package.json [1]"),  # not an open question
])
def test_a_reply_giving_code_of_its_own_is_not_marked_as_an_echo(question, reply):
    assert not any(c.echoes for c in check(reply, [COREPACK], question).unsupported)


HEADER = [Src("This document describes the Libtasn1 library for ASN.1 parsing.", "libtasn1.pdf p. 4"),
          Src("2.4 Library Notes\nThe header file of this library is libtasn1.h.", "libtasn1.pdf p. 7")]


def test_a_code_token_is_looked_up_whole_not_as_its_words():
    question = "What is the name of the header file of the Libtasn1 library?"
    # "libtasn1.h" is not "Libtasn1" + "h": source 1 names the library, source 2 the file
    result = check("libtasn1.h [1]", HEADER, question)
    assert result.text == "libtasn1.h [2]" and result.unsupported == []
    assert result.evidence[0].sentence == "The header file of this library is libtasn1.h."
    env = [Src("* `PYTHON_BUILD_CACHE_PATH` keeps downloads.\n* `PYTHON_BUILD_BUILD_PATH` sets the build folder.",
               "a.md"),
           Src("Set PYTHON_BUILD for the build and PATH for the path to it.", "b.md")]
    assert check("PYTHON_BUILD_BUILD_PATH [2]", env, "Which variable sets the build folder?").text == \
        "PYTHON_BUILD_BUILD_PATH [1]"
    # a longer or shorter token is another token: `<PACKAGE>_MAKE_OPTS` is not MAKE_OPTS, `virtualenv-delete` not this
    assert check("MAKE_OPTS [1]", [Src("Use `<PACKAGE>_MAKE_OPTS` per package.")], "Which variable?").unsupported
    delete = Src("Run `virtualenv-delete`, e.g. pyenv virtualenv-delete env.")
    (claim,) = check("`pyenv-virtualenv-delete` [1]", [delete], "Which command deletes a virtualenv?").unsupported
    assert claim.missing == ["pyenv-virtualenv-delete"]


@pytest.mark.parametrize("reply, source", [
    ("`querystring.unescape()` [1]", "querystring.unescape(str) decodes percent-encoded characters."),
    ("LIBFFI_TMPDIR [1]", "Set the `LIBFFI_TMPDIR` environment variable to choose it."),
    ("Override.xml [1]", "The file override.XML holds the user's own rules."),  # case aside
    ("Use `--keep`. [1]", "Pass --keep to keep the build directory."),
])
def test_a_code_token_the_source_writes_is_found_whatever_surrounds_it(reply, source):
    result = check(reply, [Src(source)], "Which one is it?")
    assert result.unsupported == [] and result.text == reply


def test_a_code_token_the_question_names_is_what_was_asked_not_what_the_answer_adds():
    keys = key_content("asn1_der_decoding_element [1]", "What replaces the deprecated asn1_der_decoding_element?")
    assert keys == []
    assert [k.label for k in key_content("U.S. troops, e.g. in 1990")] == ["1990"]  # abbreviations are no code


@pytest.mark.parametrize("question, said", [
    ("Is pyenv supported on Linux?", "Pyenv is supported on Linux but not on Windows."),  # the "not" is of Windows
    ("Is libffi thread-safe?", "libffi is not only thread-safe but also fast."),
    ("Is libffi thread-safe?", "libffi is thread-safe; no locking is needed."),
    ("Does pyenv work on Linux?", "Pyenv works on Linux with no extra setup."),
])
def test_a_yes_is_not_marked_where_the_negation_is_of_something_not_asked(question, said):
    sources = [Src(said), Src("Clippy lints Rust code."), Src("The MIME database maps file names to types.")]
    assert check("Yes [1]", sources, question).unsupported == []


def test_a_yes_marked_for_a_name_no_source_has_is_not_marked_twice():
    (claim,) = check("Yes [1]", [LIBFFI, MIME, CLIPPY], "Is libffi completely thread-safe on Solaris?").unsupported
    assert claim.missing == ["Solaris"]


def test_a_yes_is_recited_to_the_source_about_the_question_that_agrees_with_it():
    agrees = Src("The shared MIME database stores the type of each file name pattern.")
    result = check("Yes [1]", [LIBFFI, agrees], "Does the shared MIME database store file name patterns?")
    assert result.text == "Yes [2]" and result.unsupported == []


def test_a_no_is_never_marked_as_contradicted():
    # a "No" is often right where the source says something else; only a "Yes" against a "not" is marked
    sources = [Src("Since 3.3, libffi is completely thread-safe.")]
    assert check("No [1]", sources, "Is libffi completely thread-safe?").unsupported == []


def test_a_source_lacking_one_of_the_question_words_is_a_paraphrase_not_a_wrong_citation():
    # "preferred" is in source 2 only, "application" in none: source 1 still holds most of what was asked.
    sources = [Src("The database does not store user preferences."), Src("Users set a preferred browser.")]
    result = check("No [1]", sources, "Does the database store user preferences such as a preferred application?")
    assert result.text == "No [1]" and result.unsupported == [] and result.recited == []


def test_an_answer_with_content_of_its_own_is_checked_by_that_content_not_the_question():
    result = check("Grissom [2]", [APOLLO, CREW], "Who was in the Apollo 1 capsule during the fire?")
    assert result.text == "Grissom [2]" and result.recited == []  # "Apollo" and "fire" are in source 1 only


def test_a_list_ordinal_is_not_a_number_the_source_must_hold():
    result = check("The sources say:\n1. [1] The fire broke out.\n2) [2] It killed the crew.", [APOLLO, CREW])
    assert result.unsupported == [] and result.recited == []
    assert [k.label for k in key_content("1967.")] == ["1967"]  # a year ending a sentence is still checked


def test_what_the_question_asks_is_not_key_content():
    assert [k.label for k in key_content("The Apollo 1 fire killed Grissom", "Whom did the Apollo 1 fire kill?")] == [
        "Grissom"]


def test_a_capital_at_a_sentence_start_is_a_name_only_where_the_sources_write_it_as_one():
    long_claim = "Then the whole crew of the capsule died in the fire"
    assert key_content(long_claim) == []
    assert [k.label for k in key_content("Grissom and the whole crew of the capsule died", names={"grissom"})] == [
        "Grissom"]


def test_a_short_answer_span_is_checked_word_by_word_with_stems_in_one_source():
    sources = [Src("Japan has many islands."), Src("Volcanoes are common elsewhere.")]
    assert check("many island [1]", sources, "What does Japan have?").unsupported == []
    # Each word is in some source, but no one source says "many volcanoes".
    assert [c.missing for c in check("many volcanoes [1]", sources, "What does Japan have?").unsupported] == [
        ["many volcanoes"]]
    # With a number or a name the span's other words are its paraphrase: only those are checked.
    assert check("13,527 people [1]", [Src("The population was 13527.")], "How many?").unsupported == []


def test_a_group_after_a_sentence_end_cites_that_sentence():
    result = check("They died on January 27, 1967. [1]", [APOLLO, CREW], "When?")
    assert result.text == "They died on January 27, 1967. [2]"


def test_citations_of_missing_sources_are_left_to_the_invalid_citation_warning():
    result = check("Grissom [7].", [APOLLO, CREW])
    assert result.text == "Grissom [7]." and result.unsupported == [] and result.recited == []


def test_settled_text_only_grows_while_a_reply_streams():
    checker = SupportChecker([APOLLO, CREW], "Who died in the Apollo 1 fire?")
    reply = "Grissom, White and Chaffee [1][2]. The date was January 27, 1967 [1]."
    final = checker.check(reply).text
    assert final == "Grissom, White and Chaffee [1][2]. The date was January 27, 1967 [2]."
    views = [checker.settled(reply[:i]) for i in range(len(reply) + 1)]
    assert all(final.startswith(v) for v in views)
    assert checker.settled("Grissom, White and Chaffee [1") == "Grissom, White and Chaffee "  # [1 may grow


# ---------------------------------------------------------------- through the pipeline

DOCS = {
    "apollo": ["The Apollo 1 fire broke out during a launch rehearsal in the capsule."],
    "crew": ["The crew of the capsule were Grissom, White and Chaffee."],
}


@pytest.fixture
def ask(tmp_path, fake_embedder, fake_generator):
    store = build_index(tmp_path / "idx", fake_embedder, DOCS)
    s = load_settings(index=tmp_path / "idx", retrieve={"top_k": 2, "min_score": 0.0})
    pipe = RagPipeline(s, store=store, embedder=fake_embedder, generator=fake_generator)

    def run(question, reply_for):
        """Stream ``question``; ``reply_for`` builds the reply from {doc_id: source number}."""
        numbers = {h.chunk.doc_id: h.rank for h in pipe.retrieve(question)}
        fake_generator.reply = reply_for(numbers)
        items = list(pipe.stream(question))
        return "".join(items[:-1]), items[-1], numbers

    return run


def test_the_wrong_source_cited_is_corrected_before_it_is_shown(ask):
    streamed, answer, n = ask("Who was in the Apollo 1 capsule?", lambda n: f"Grissom, White and Chaffee [{n['apollo']}]. They died.")
    assert streamed == answer.text == f"Grissom, White and Chaffee [{n['crew']}]. They died."
    assert answer.citations == [n["crew"]] and answer.reply.startswith(f"Grissom, White and Chaffee [{n['apollo']}]")
    assert answer.unsupported_claims == [] and answer.warnings == []
    assert answer.notes == [f'cited [{n["crew"]}] instead of [{n["apollo"]}]: what "Grissom, White and Chaffee" says '
                            "is in that source"]
    d = answer.to_dict()
    assert d["evidence"] == [{"citation": n["crew"], "source": "crew.txt", "claim": "Grissom, White and Chaffee",
                              "sentence": DOCS["crew"][0], "start": 0, "end": len(DOCS["crew"][0]),
                              "highlights": [(29, 36), (38, 43), (48, 55)]}]
    assert d["recited"][0]["to"] == [n["crew"]] and d["notes"] == answer.notes


def test_a_number_in_no_shown_source_marks_the_answer_unsupported(ask):
    _, answer, n = ask("When did the Apollo 1 fire break out?", lambda n: f"In 1966 [{n['apollo']}].")
    assert answer.text == f"In 1966 [{n['apollo']}]." and not answer.unsupported  # it does cite a source
    assert [(c.claim, c.missing) for c in answer.unsupported_claims] == [("In 1966", ["1966"])]
    assert any("'1966'" in w and "none of the sources shown" in w for w in answer.warnings)
    assert answer.to_dict()["unsupported_claims"][0]["missing"] == ["1966"]
    assert "Warning: '1966'" in answer.render_markdown()



def test_a_bare_yes_is_recited_to_the_source_about_the_question_before_it_is_shown(ask):
    _, answer, n = ask("Were Grissom, White and Chaffee the crew?", lambda n: f"Yes [{n['apollo']}]")
    assert answer.text == f"Yes [{n['crew']}]" and answer.citations == [n["crew"]] and answer.unsupported_claims == []
    assert answer.notes == [f'cited [{n["crew"]}] instead of [{n["apollo"]}]: "Yes" answers the question, and what it '
                            "asks about is in that source"]


def test_a_question_written_as_a_title_names_nothing_by_its_capitals():
    source = Src("Acupuncture was effective for phonotraumatic vocal pathologies in this trial.")
    result = check("Yes [1]", [source, LIBFFI], "Is Acupuncture Efficacious for Treating Phonotraumatic Vocal Pathologies?")
    assert result.unsupported == [] and result.recited == []  # "Efficacious" is a word the source need not have
    facts, _ = question_content("Was Abraham Lincoln the sixteenth President of the United States?")
    assert [k.label for k in facts] == ["Abraham Lincoln", "President", "United States"]


def test_the_word_that_asks_is_no_name_even_where_a_source_capitalises_it_mid_sentence():
    facts, words = question_content("How many parts of speech are there in Malay?", {"how", "malay"})
    assert [k.label for k in facts] == ["Malay"] and "How" not in [k.label for k in words]


def test_a_month_named_like_an_asking_word_stays_a_name_of_the_question():
    facts, _ = question_content("Was the treaty signed in May?", {"may"})
    assert [k.label for k in facts] == ["May"]


def test_a_yes_its_source_contradicts_is_shown_with_that_sentence_in_every_output(tmp_path, fake_embedder,
                                                                                  fake_generator):
    docs = {"threads": ["libffi is not completely thread-safe. Closures need a lock."],
            "memory": ["Closures are allocated with ffi_closure_alloc in writable memory."]}
    store = build_index(tmp_path / "idx", fake_embedder, docs)
    pipe = RagPipeline(load_settings(index=tmp_path / "idx", retrieve={"top_k": 2, "min_score": 0.0}),
                       store=store, embedder=fake_embedder, generator=fake_generator)
    question = "Is libffi completely thread-safe?"
    n = {h.chunk.doc_id: h.rank for h in pipe.retrieve(question)}
    fake_generator.reply = f"Yes [{n['threads']}]"
    answer = list(pipe.stream(question))[-1]
    assert answer.text == f"Yes [{n['threads']}]"  # shown, not withheld
    (claim,) = answer.unsupported_claims
    assert claim.contradicted_by == "libffi is not completely thread-safe."
    assert any('but the cited source says: "libffi is not completely thread-safe."' in w for w in answer.warnings)
    assert answer.to_dict()["unsupported_claims"][0]["contradicted_by"] == claim.contradicted_by
