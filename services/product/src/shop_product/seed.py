"""The bakery catalog a fresh install starts with (prices in US cents)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SeedProduct:
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    stock: int


CATALOG: tuple[SeedProduct, ...] = (
    # bread
    SeedProduct(
        "BRD-SOURDOUGH",
        "Country Sourdough Loaf",
        "Naturally leavened with a 20-year-old starter, long cold ferment, blistered crust.",
        "bread",
        850,
        40,
    ),
    SeedProduct(
        "BRD-BAGUETTE",
        "Classic Baguette",
        "Crisp crust and open crumb, baked every morning from French T65 flour.",
        "bread",
        375,
        80,
    ),
    SeedProduct(
        "BRD-RYE",
        "Seeded Rye",
        "Dense Nordic-style rye with sunflower, pumpkin and flax seeds.",
        "bread",
        925,
        25,
    ),
    SeedProduct(
        "BRD-CIABATTA",
        "Olive Oil Ciabatta",
        "High-hydration Italian loaf with a glossy, airy crumb; great for sandwiches.",
        "bread",
        550,
        35,
    ),
    SeedProduct(
        "BRD-BRIOCHE",
        "Brioche Loaf",
        "Rich, buttery and golden; makes the best French toast you will ever have.",
        "bread",
        1050,
        20,
    ),
    SeedProduct(
        "BRD-FOCACCIA",
        "Rosemary Sea Salt Focaccia",
        "Dimpled, olive-oil soaked slab topped with fresh rosemary and flaky salt.",
        "bread",
        700,
        30,
    ),
    # cakes
    SeedProduct(
        "CAK-CHOC-FUDGE",
        "Triple Chocolate Fudge Cake",
        "Three layers of dark chocolate sponge with fudge frosting. Serves 8-10.",
        "cakes",
        4200,
        8,
    ),
    SeedProduct(
        "CAK-CARROT",
        "Carrot Cake",
        "Spiced carrot and walnut layers with cream cheese frosting. Serves 8-10.",
        "cakes",
        3800,
        10,
    ),
    SeedProduct(
        "CAK-RED-VELVET",
        "Red Velvet Cake",
        "Buttermilk cocoa sponge and vanilla cream cheese frosting. Serves 8-10.",
        "cakes",
        4000,
        6,
    ),
    SeedProduct(
        "CAK-LEMON-DRIZZLE",
        "Lemon Drizzle Loaf Cake",
        "Zesty lemon sponge soaked in a crackly lemon sugar syrup.",
        "cakes",
        1600,
        15,
    ),
    SeedProduct(
        "CAK-CHEESECAKE",
        "New York Cheesecake",
        "Dense, creamy baked cheesecake on a graham cracker crust. Serves 10-12.",
        "cakes",
        4500,
        5,
    ),
    # cookies
    SeedProduct(
        "COO-CHOC-CHIP",
        "Brown Butter Chocolate Chip Cookie",
        "Chewy centre, crisp edges, 70% dark chocolate chunks and flaky salt.",
        "cookies",
        325,
        120,
    ),
    SeedProduct(
        "COO-OATMEAL",
        "Oatmeal Raisin Cookie",
        "Soft, cinnamon-spiced oat cookie studded with plump raisins.",
        "cookies",
        295,
        90,
    ),
    SeedProduct(
        "COO-SHORTBREAD",
        "Scottish Shortbread (box of 6)",
        "Three ingredients, all butter, baked low and slow until sandy and crisp.",
        "cookies",
        850,
        40,
    ),
    SeedProduct(
        "COO-MACARONS",
        "Assorted French Macarons (box of 12)",
        "Pistachio, raspberry, salted caramel and vanilla almond meringue shells.",
        "cookies",
        2400,
        25,
    ),
    SeedProduct(
        "COO-SNICKERDOODLE",
        "Snickerdoodle",
        "Pillowy sugar cookie rolled in cinnamon sugar.",
        "cookies",
        295,
        70,
    ),
    # pastries
    SeedProduct(
        "PAS-CROISSANT",
        "Butter Croissant",
        "Laminated over three days with cultured butter; 81 flaky layers.",
        "pastries",
        425,
        100,
    ),
    SeedProduct(
        "PAS-PAIN-CHOC",
        "Pain au Chocolat",
        "Croissant dough wrapped around two batons of dark chocolate.",
        "pastries",
        475,
        80,
    ),
    SeedProduct(
        "PAS-CINNAMON-ROLL",
        "Cinnamon Roll",
        "Soft swirled dough, brown sugar cinnamon filling, cream cheese glaze.",
        "pastries",
        450,
        60,
    ),
    SeedProduct(
        "PAS-ALMOND-CROISSANT",
        "Almond Croissant",
        "Twice-baked croissant filled with frangipane and topped with toasted almonds.",
        "pastries",
        525,
        45,
    ),
    SeedProduct(
        "PAS-DANISH",
        "Raspberry Cheese Danish",
        "Flaky pastry with sweet cream cheese and a spoon of raspberry jam.",
        "pastries",
        495,
        50,
    ),
    # pies
    SeedProduct(
        "PIE-APPLE",
        "Dutch Apple Pie",
        "Cinnamon apples under a buttery crumble topping. 9-inch.",
        "pies",
        2800,
        12,
    ),
    SeedProduct(
        "PIE-PECAN",
        "Bourbon Pecan Pie",
        "Toasted pecans in a caramel custard with a splash of bourbon. 9-inch.",
        "pies",
        3200,
        10,
    ),
    SeedProduct(
        "PIE-KEY-LIME",
        "Key Lime Pie",
        "Tart lime custard, graham crust and whipped cream. 9-inch.",
        "pies",
        2900,
        8,
    ),
    # coffee
    SeedProduct(
        "COF-HOUSE-BLEND",
        "House Blend Coffee Beans (12 oz)",
        "Medium roast with notes of milk chocolate, toasted nuts and caramel.",
        "coffee",
        1595,
        50,
    ),
    SeedProduct(
        "COF-ESPRESSO",
        "Espresso Roast Beans (12 oz)",
        "Dark, syrupy roast built for espresso and milk drinks.",
        "coffee",
        1695,
        40,
    ),
    SeedProduct(
        "COF-ETHIOPIA",
        "Ethiopia Yirgacheffe Single Origin (12 oz)",
        "Light roast, washed process; jasmine, bergamot and lemon.",
        "coffee",
        1895,
        30,
    ),
    SeedProduct(
        "COF-DECAF",
        "Swiss Water Decaf (12 oz)",
        "Chemical-free decaffeinated Colombian beans, smooth and sweet.",
        "coffee",
        1595,
        25,
    ),
    SeedProduct(
        "COF-COLD-BREW",
        "Cold Brew Concentrate (32 oz)",
        "Steeped for 18 hours; mix one part with two parts water or milk.",
        "coffee",
        1450,
        20,
    ),
)
