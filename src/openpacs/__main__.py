from openpacs.cli.main import main

main()
