from genaiops.cli import main

main()
