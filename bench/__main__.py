from faithbench.cli import main

main()
