from finetune.dataset import RaftExample, SourceText
from finetune.validate import compare, score_reply, summarize
from rag_app.prompts import ABSTAIN


def ex(kept=True, answer_type="span"):
    sources = [SourceText("Item is red.", "a.txt", "a"), SourceText("Other text.", "b.txt", "b")]
    return RaftExample("1", "t", "Colour?", sources, "red [1]" if kept else ABSTAIN, [1] if kept else [], kept, answer_type, ["red"])


class Canned:
    def __init__(self, reply):
        self.reply = reply

    def generate(self, messages, max_new_tokens, temperature=0.0, top_p=0.95):
        return self.reply


def test_scores_answers_citations_and_abstention():
    assert score_reply(ex(), "red [1]") == {"abstained": False, "invalid_citation": False, "f1": 1.0,
                                           "cites_gold": True, "false_abstention": False}
    row = score_reply(ex(), "It is red [2] [7]")
    assert row["cites_gold"] is False and row["invalid_citation"] is True and 0 < row["f1"] < 1
    assert score_reply(ex(kept=False), ABSTAIN)["abstain_correct"] is True
    assert score_reply(ex(answer_type="yes_no"), "Red, surely")["f1"] == 0.0


def test_compare_summarises_each_generator():
    data = [ex(), ex(kept=False)]
    out = compare(data, {"base": Canned("The item is blue."), "tuned": Canned("red [1]")})
    assert out["base"]["answer_f1"] == 0.0 and out["base"]["abstention_accuracy_gold_withheld"] == 0.0
    assert out["tuned"]["answer_f1"] == 1.0 and out["tuned"]["citation_precision"] == 1.0
    assert summarize([])["n"] == 0
