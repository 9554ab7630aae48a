from linecrew.cli import main

main()
