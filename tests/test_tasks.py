"""Tasks: the registry, the prompt defaults a task gives a recipe, and the checks at load time."""

import pytest

from finsent.completion import DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE, LABELS
from finsent.config import load_config
from finsent.errors import ConfigError, DataError
from finsent.grpo import train_grpo
from finsent.rewards import consistency_reward, correctness_reward, format_reward
from finsent.tasks import TASKS, TRANSACTION_CATEGORIES


def test_registry_lists_the_tasks_with_help():
    assert TASKS.names() == ["instruct", "sentiment", "transactions"]
    assert all(TASKS.help(name) for name in TASKS.names())


def test_sentiment_is_the_default_and_keeps_the_original_contract():
    cfg = load_config(None)
    assert cfg.task == "sentiment"
    assert TASKS.get("sentiment").labels == LABELS
    assert (cfg.prompt.system, cfg.prompt.user_template) == (DEFAULT_SYSTEM_PROMPT, DEFAULT_USER_TEMPLATE)
    assert cfg.data.anonymize is False


def test_transactions_labels_are_the_documented_taxonomy_with_display_names():
    task = TASKS.get("transactions")
    assert task.labels == (
        "food_dining", "groceries", "transport", "shopping", "bills_utilities", "entertainment", "health", "travel",
        "income", "transfers", "fees", "other",
    )  # fmt: skip
    assert task.display("food_dining") == "Food & Dining"
    assert task.display("bills_utilities") == "Bills & Utilities"
    assert task.display(None) == "no answer"
    assert all(c.covers for c in TRANSACTION_CATEGORIES)
    for category in TRANSACTION_CATEGORIES:  # the prompt names every id the parser accepts
        assert category.id in task.prompt.system


def test_a_task_gives_its_prompt_unless_the_recipe_sets_one(tmp_path):
    cfg = load_config(None, ["task=transactions"])
    assert cfg.prompt == TASKS.get("transactions").prompt
    assert cfg.data.anonymize is True
    recipe = tmp_path / "r.yaml"
    recipe.write_text("task: transactions\nprompt:\n  system: Categorize it.\ndata: {anonymize: false}\n")
    cfg = load_config(recipe)
    assert cfg.prompt.system == "Categorize it."
    assert cfg.prompt.user_template == TASKS.get("transactions").prompt.user_template
    assert cfg.data.anonymize is False
    assert load_config(None, ["task=instruct"]).prompt.user_template == "{text}"


def test_unknown_task_names_file_line_and_suggests(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("output_dir: x\ntask: transaction\n")
    with pytest.raises(ConfigError, match="Did you mean 'transactions'") as err:
        load_config(recipe)
    assert f"{recipe}:2: task: unknown task 'transaction'" in str(err.value)


def test_a_mixture_needs_the_instruct_task(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("data:\n  mixture: {total: 10, weights: {qa: 1}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert f"{recipe}:2: data.mixture: mixtures sample instruction rows" in str(err.value)
    recipe.write_text("task: instruct\ndata:\n  mixture: {total: 10, weights: {}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(recipe)
    assert f"{recipe}:3: data.mixture.weights: expected task_type -> weight" in str(err.value)


def test_rewards_check_answers_against_the_rows_task():
    good = "<reasoning>The merchant keyword STARBUCKS points to Food & Dining.</reasoning><answer>food_dining</answer>"
    kwargs = {"label": ["food_dining"], "text": ["SQ *STARBUCKS 6.50"], "task": ["transactions"]}
    assert correctness_reward([good], **kwargs) == [1.0]
    assert format_reward([good], **kwargs) == [1.0]
    assert format_reward([good]) == [0.5]  # against the sentiment labels the tags are right, the answer is not
    with pytest.raises(DataError, match="consistency compares sentiment polarities"):
        consistency_reward([good], **kwargs)


def test_grpo_refuses_the_sentiment_only_reward_for_another_task_before_loading_a_model(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "task: transactions\ndata: {teacher: {name: rules}}\ngrpo:\n  model: Qwen/Qwen3-4B\n"
        "  rewards: [correctness, consistency]\n  trainer: {bf16: false}\n"
    )
    with pytest.raises(ConfigError, match="reward consistency compares sentiment polarities") as err:
        train_grpo(load_config(recipe, [f"output_dir={tmp_path}"]))
    assert f"{recipe}:5: grpo.rewards" in str(err.value)
