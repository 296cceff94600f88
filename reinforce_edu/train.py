"""`python -m reinforce_edu.train`: the fine-tuning command line, kept at its short name (reinforce_edu.llm.cli)."""

from reinforce_edu.llm.cli import main

if __name__ == "__main__":
    main()
