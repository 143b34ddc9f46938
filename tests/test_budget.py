"""Budget progress follows whichever budget binds first."""
from llm_sweep.core.budget import Budget, Spent
from llm_sweep.core.config import BudgetConfig


def test_progress_is_the_largest_fraction_spent():
    budget = Budget(BudgetConfig(time="100s", steps=50, tokens=10_000))
    spent = Spent(step=10, tokens=5_000, train_s=30.0)
    assert budget.fractions(spent) == {"time": 0.3, "steps": 0.2, "tokens": 0.5}
    assert budget.progress(spent) == 0.5 and budget.binding(spent) == "tokens"
    assert not budget.done(spent)
    assert budget.done(Spent(step=50))


def test_compile_and_eval_count_only_when_asked():
    spent = Spent(train_s=10.0, compile_s=40.0, eval_s=5.0)
    assert Budget(BudgetConfig(time="100s")).elapsed_s(spent) == 10.0
    both = Budget(BudgetConfig(time="100s", count_compile=True, count_eval=True))
    assert both.elapsed_s(spent) == 55.0
    assert both.progress(spent) == 0.55


def test_progress_is_capped_at_one():
    assert Budget(BudgetConfig(steps=4)).progress(Spent(step=9)) == 1.0


def test_progress_after_step_looks_one_step_ahead():
    budget = Budget(BudgetConfig(steps=10))
    assert budget.progress_after_step(Spent(step=0), 100, 0.5) == 0.1
    assert budget.progress_after_step(Spent(step=9), 100, 0.5) == 1.0
    timed = Budget(BudgetConfig(time="10s"))
    assert timed.progress_after_step(Spent(train_s=4.0), 100, 1.0) == 0.5


def test_a_label_reads_back_as_the_params_it_was_made_from():
    """Only an older runs.csv needs this: its budget column is all it says of the budget."""
    budget = Budget(BudgetConfig(time="3h", steps=200, tokens=1_000_000, flops=8e12), strict=False)
    params = Budget.params_in_label(budget.label())
    assert params == {"budget.time": "3h", "budget.steps": "200", "budget.tokens": "1000000",
                      "budget.flops": "8e+12"}
    assert Budget.from_params(params).label() == budget.label()
    assert Budget.from_params(params).cfg.flops == 8e12
    assert Budget.params_in_label("none") == {}
