from ephys.cli import main

main()
