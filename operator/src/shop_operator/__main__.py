from shop_operator.main import main

main()
