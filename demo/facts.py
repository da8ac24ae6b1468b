"""The facts of the demo shop, "Maple & Pine Home Goods": stores, shipping zones, catalog, care.

Every fact is a plain lookup a tiny model can learn from the corpus: city -> hours, first ZIP
digit -> zone -> days and cost, product -> price, material -> care, category -> warranty.
Nothing is hashed or random, so the same question always has the same right answer.
"""
from __future__ import annotations

SHOP = "Maple & Pine"
SHOP_FULL = "Maple & Pine Home Goods"

CITIES = ("Portland", "Denver", "Austin", "Boston", "Chicago", "Seattle")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# city -> (Monday to Friday, Saturday, Sunday)
STORE_HOURS = {
    "Portland": ("9am to 7pm", "10am to 6pm", "closed"),
    "Denver": ("10am to 8pm", "10am to 8pm", "11am to 5pm"),
    "Austin": ("9am to 6pm", "9am to 5pm", "closed"),
    "Boston": ("8am to 6pm", "9am to 5pm", "12pm to 5pm"),
    "Chicago": ("10am to 9pm", "10am to 7pm", "11am to 6pm"),
    "Seattle": ("9am to 8pm", "10am to 6pm", "closed"),
}
ADDRESSES = {
    "Portland": "214 Burnside Street",
    "Denver": "88 Larimer Street",
    "Austin": "1520 Congress Avenue",
    "Boston": "45 Newbury Street",
    "Chicago": "700 Clark Street",
    "Seattle": "312 Pike Street",
}

# Zone = first ZIP digit // 2 + 1: the warehouse is in the east, so low digits are close.
ZONES = {
    1: ("2-3 business days", "$6"),
    2: ("3-4 business days", "$8"),
    3: ("4-5 business days", "$10"),
    4: ("5-6 business days", "$12"),
    5: ("6-8 business days", "$14"),
}

# name -> (price in dollars, category, material)
PRODUCTS = {
    "oak dining table": (649, "furniture", "oak"),
    "oak bookshelf": (289, "furniture", "oak"),
    "walnut side table": (179, "furniture", "walnut"),
    "rattan armchair": (249, "furniture", "rattan"),
    "leather ottoman": (199, "furniture", "leather"),
    "linen duvet cover": (129, "textiles", "linen"),
    "linen curtain panel": (69, "textiles", "linen"),
    "cotton bath towel": (24, "textiles", "cotton"),
    "wool throw blanket": (89, "textiles", "wool"),
    "wool area rug": (399, "rugs", "wool"),
    "ceramic dinner plate set": (64, "tableware", "ceramic"),
    "ceramic coffee mug": (14, "tableware", "ceramic"),
    "glass flower vase": (39, "tableware", "glass"),
    "cast iron skillet": (45, "cookware", "cast iron"),
    "cast iron dutch oven": (119, "cookware", "cast iron"),
    "stainless steel saucepan": (59, "cookware", "stainless steel"),
    "copper kettle": (79, "cookware", "copper"),
    "glass storage jar": (12, "kitchenware", "glass"),
    "marble cutting board": (49, "kitchenware", "marble"),
    "bamboo utensil set": (19, "kitchenware", "bamboo"),
    "brass table lamp": (139, "lighting", "brass"),
    "rattan pendant light": (159, "lighting", "rattan"),
}
PRODUCT_NAMES = tuple(PRODUCTS)
FURNITURE = tuple(p for p, (_, cat, _) in PRODUCTS.items() if cat == "furniture")
COOKWARE = tuple(p for p, (_, cat, _) in PRODUCTS.items() if cat == "cookware")

WARRANTY_YEARS = {
    "furniture": 5, "cookware": 10, "lighting": 3, "tableware": 2,
    "textiles": 1, "kitchenware": 2, "rugs": 4,
}
CATEGORIES = tuple(WARRANTY_YEARS)

# material -> care instruction; each phrase is distinct so the oracle can tell them apart
CARE = {
    "oak": "wipe it with a damp cloth and oil it every six months",
    "walnut": "dust it weekly and wax it twice a year",
    "rattan": "dust it with a soft brush and keep it out of direct sun",
    "leather": "condition it every three months",
    "linen": "wash it cold and line dry it",
    "cotton": "wash it warm and tumble dry it on low",
    "wool": "spot clean it and air it out instead of washing it",
    "ceramic": "hand wash it and avoid sudden temperature changes",
    "glass": "wash it on the top rack of the dishwasher",
    "cast iron": "hand wash it, dry it right away and rub in a thin layer of oil",
    "stainless steel": "clean stains with a baking soda paste",
    "copper": "polish it with lemon juice and salt",
    "marble": "wipe spills right away and seal it once a year",
    "bamboo": "hand wash it and rub it with mineral oil every month",
    "brass": "buff it with a soft dry cloth",
}
MATERIALS = tuple(CARE)

SUPPORT_PHONE = "1-800-555-0142"
PRIVACY_EMAIL = "privacy@mapleandpine.com"


def hours_for(city: str, day: str) -> str:
    weekday, saturday, sunday = STORE_HOURS[city]
    return {"Saturday": saturday, "Sunday": sunday}.get(day, weekday)


def zone_of(zip_code: str) -> int:
    return int(zip_code[0]) // 2 + 1


def context(slots: dict) -> dict:
    """The slots plus every fact derived from them, for formatting answers and checking them."""
    ctx = dict(slots)
    if "city" in slots:
        weekday, saturday, sunday = STORE_HOURS[slots["city"]]
        ctx.update(address=ADDRESSES[slots["city"]], weekday=weekday, saturday=saturday, sunday=sunday)
        if "day" in slots:
            ctx["hours"] = hours_for(slots["city"], slots["day"])
    if "zip" in slots:
        zone = zone_of(slots["zip"])
        ctx.update(zip0=slots["zip"][0], zone=str(zone), ship_days=ZONES[zone][0], ship_cost=ZONES[zone][1])
    if "product" in slots:
        price, category, material = PRODUCTS[slots["product"]]
        ctx.update(price=f"${price}", product_category=category, product_material=material,
                   product_years=str(WARRANTY_YEARS[category]))
    if "material" in slots:
        ctx["care"] = CARE[slots["material"]]
    if "category" in slots:
        ctx["years"] = f"{WARRANTY_YEARS[slots['category']]}-year"
    return ctx
