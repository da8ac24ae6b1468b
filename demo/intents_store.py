"""Slotted intents: stores, shipping by ZIP, catalog prices, care, warranty, furniture lead time.

Slotted intents are most of the SFT rows because their held-out prompts are genuinely new
(an unseen template and, where possible, an unseen slot combination), not a reworded copy.
"""
from __future__ import annotations

from demo.facts import ADDRESSES, CARE, FURNITURE, PRODUCTS, STORE_HOURS, WARRANTY_YEARS, ZONES
from demo.spec import Intent

_MONEY_WORDS = r"how much|\bcost|\bprice|\bpriced|\bfee\b|\bcharge|\brates?\b|expensive|pricey|\bpay\b|go for\b"
_ALL_HOURS = tuple(sorted({h for hs in STORE_HOURS.values() for h in hs}))

STORE_HOURS_INTENT = Intent(
    name="store_hours", kind="clock", weight=4.0, requires=("city", "day"),
    templates=(
        "What are your {city} store hours on {day}?",
        "When is the {city} store open on {day}?",
        "Is your {city} location open on {day}?",
        "What time does the {city} shop open on {day}?",
        "What hours is the {city} store open on {day}?",
        "Can I visit the {city} store on {day}? What are the hours?",
        "How late is the {city} store open on {day}?",
        "{day} hours for the {city} store, please?",
        "Are you open in {city} on {day}?",
        "What are the opening hours in {city} on {day}?",
        "I want to stop by the {city} store on {day}. When are you open?",
        "Could you tell me when your {city} branch opens and closes on {day}?",
    ),
    cues=((r"\bopen|\bhours\b|\bclos|what time|how late", 3.0),),
    fact=lambda c: c["hours"], wrong=_ALL_HOURS,
    says=("Our {city} store is {vs} on {day}.", "On {day}, the {city} store is {vs}.",
          "The {city} store is {vs} on {day}."),
    bare=("{v} on {day}.", "{v}."),
    extras=("You'll find it at {address}.", "Holiday hours can differ, so check the store page before a holiday."),
)

STORE_LOCATION = Intent(
    name="store_location", kind="address", weight=2.0, mode="curt", requires=("city",), forbids=("day",),
    templates=(
        "Where is your {city} store?",
        "What's the address of the {city} store?",
        "Where can I find your shop in {city}?",
        "How do I get to the Maple & Pine store in {city}? What's the address?",
        "Do you have a store in {city}? Where is it?",
        "What is the street address for your {city} location?",
        "Where exactly is the {city} showroom?",
        "I'm in {city}. Where's your store located?",
    ),
    cues=((r"\bwhere\b|\baddress|\blocated\b|get to the", 3.0),),
    fact=lambda c: c["address"], wrong=tuple(ADDRESSES.values()),
    says=("Our {city} store is at {v}.", "You'll find our {city} store at {v}.",
          "The {city} store is located at {v}."),
    bare=("{v}.",),
    extras=("It's open {weekday} on weekdays.", "There's free parking right behind the building."),
)

STORE_PICKUP = Intent(
    name="store_pickup", kind="nhours", weight=1.5, requires=("city",), forbids=("day",),
    templates=(
        "Can I pick up my order at the {city} store?",
        "How soon can I pick up an online order in {city}?",
        "Do you offer in-store pickup in {city}?",
        "If I order online, when can I collect it from the {city} store?",
        "How long until my order is ready for pickup at the {city} store?",
        "Is store pickup available at your {city} location?",
        "I'd like to pick up my order in {city}. How does that work?",
        "Can I buy online and grab it at the {city} shop?",
    ),
    cues=((r"pick ?up|\bcollect\b|\bgrab\b|buy online", 5.0),),
    fact="4 hours", wrong=("1 hour", "8 hours", "24 hours"),
    says=("Orders are ready for pickup at the {city} store within {v}.",
          "Yes, pickup at our {city} store is free, and orders are ready within {v}."),
    bare=("Ready within {v}.",),
    extras=("Bring your order email and a photo ID.", "We'll text you as soon as it's ready."),
)

SHIPPING_TIME = Intent(
    name="shipping_time", kind="bdays", weight=3.0, requires=("zip",),
    templates=(
        "How long does shipping take to {zip}?",
        "When will my order arrive if I live in {zip}?",
        "How many days does delivery to ZIP code {zip} take?",
        "I'm in {zip}. How fast can you get a package to me?",
        "What is the delivery time to {zip}?",
        "How long until an order reaches ZIP {zip}?",
        "If I order today, when does it arrive in {zip}?",
        "Roughly how many business days for shipping to {zip}?",
        "How quickly do you ship to {zip}?",
        "How long is standard shipping to ZIP code {zip}?",
        "My ZIP is {zip}. How long will delivery take?",
        "Estimated arrival time for an order going to {zip}?",
    ),
    cues=((r"how long|how many|how fast|how quickly|how soon|when (will|does)|delivery time|arriv|reach", 3.0),),
    fact=lambda c: c["ship_days"], wrong=tuple(d for d, _ in ZONES.values()),
    says=("Standard shipping to {zip} takes {v}.", "Orders to {zip} arrive in {v}.",
          "Delivery to {zip} takes {v}."),
    bare=("{v}.",),
    extras=("ZIP codes starting with {zip0} are in shipping zone {zone}.",
            "Orders placed before noon ship the same day."),
)

SHIPPING_COST = Intent(
    name="shipping_cost", kind="money", weight=3.0, requires=("zip",),
    templates=(
        "How much is shipping to {zip}?",
        "What does delivery cost to ZIP code {zip}?",
        "What's the shipping fee for {zip}?",
        "How much would you charge to send an order to {zip}?",
        "How much does it cost to ship to {zip}?",
        "What are your shipping rates for ZIP {zip}?",
        "I live in {zip}. How much is standard shipping?",
        "Shipping price to {zip}, please?",
        "Is shipping to {zip} expensive?",
        "What will I pay for shipping to {zip}?",
        "How much do you charge for delivery to {zip}?",
        "What's the cost of sending a package to {zip}?",
    ),
    cues=((_MONEY_WORDS, 3.0),),
    fact=lambda c: c["ship_cost"], wrong=tuple(c for _, c in ZONES.values()), allowed=("$75",),
    says=("Standard shipping to {zip} costs {v}.", "Shipping to {zip} is {v} per order.",
          "Delivery to {zip} costs {v}."),
    bare=("{v}.",),
    extras=("Shipping is free on orders over $75.", "ZIP codes starting with {zip0} are in shipping zone {zone}."),
)

PRODUCT_PRICE = Intent(
    name="product_price", kind="money", weight=4.0, requires=("product",), forbids=("zip",),
    templates=(
        "How much is the {product}?",
        "What does the {product} cost?",
        "What's the price of the {product}?",
        "How much would I pay for the {product}?",
        "How much do you charge for the {product}?",
        "What is the {product} priced at?",
        "Can you tell me the price of your {product}?",
        "I'm looking at the {product}. What does it go for?",
        "How expensive is the {product}?",
        "Price check on the {product}, please.",
        "What's the current price for the {product}?",
        "Is the {product} pricey? How much is it?",
    ),
    cues=((_MONEY_WORDS, 2.0),),
    fact=lambda c: c["price"], wrong=tuple(f"${p}" for p, _, _ in PRODUCTS.values()), allowed=("$75",),
    says=("The {product} costs {v}.", "Our {product} is {v}.", "The {product} is priced at {v}."),
    bare=("{v}.",),
    extras=("It's part of our {product_category} range, which has a {product_years}-year warranty.",
            "Orders over $75 ship free."),
)

PRODUCT_CARE = Intent(
    name="product_care", kind="named", weight=3.0, requires=("material",),
    templates=(
        "How do I clean {material} items?",
        "What's the best way to care for {material}?",
        "How should I look after my {material} pieces?",
        "Any tips for keeping {material} in good shape?",
        "How do I take care of {material}?",
        "What care does {material} need?",
        "How do I maintain something made of {material}?",
        "I just bought something in {material}. How do I keep it looking nice?",
    ),
    cues=((r"\bclean|\bcare\b|look after|maintain|keep (it|\w+) (looking|in good)|\btips\b", 3.0),),
    fact=lambda c: c["care"], wrong=tuple(CARE.values()),
    says=("For {material}, {v}.", "To care for {material}, {v}.", "With {material}, the rule is simple: {v}."),
    bare=("{v}.",),
    extras=("Test any cleaner on a hidden spot first.", "Skip harsh chemicals like bleach."),
)

WARRANTY = Intent(
    name="warranty", kind="years", weight=2.0, mode="curt", requires=("category",),
    templates=(
        "What's the warranty on {category} items?",
        "How long is the warranty for your {category} collection?",
        "Does the {category} collection come with a warranty?",
        "If something from the {category} range breaks, how long am I covered?",
        "What warranty do you offer on {category} purchases?",
        "How many years of warranty do {category} items have?",
        "Is there a guarantee on {category} items?",
        "What kind of coverage comes with {category} purchases?",
    ),
    cues=((r"warrant|guarantee|covered|coverage", 5.0),),
    fact=lambda c: c["years"], wrong=tuple(f"{y}-year" for y in sorted(set(WARRANTY_YEARS.values()))),
    says=("Our {category} collection comes with a {v} warranty.", "Every item in our {category} range has a {v} "
                                                                  "warranty."),
    bare=("{v} warranty.",),
    extras=("Just keep your receipt or order number to make a claim.",
            "It covers defects in materials and workmanship."),
)

FURNITURE_LEAD_TIME = Intent(
    name="furniture_lead_time", kind="weeks", optional=("product",), forbids=("zip",),
    choices=(("product", FURNITURE),),
    templates=(
        "How long does furniture take to arrive?",
        "When will the {product} be delivered if I order it today?",
        "What's the delivery lead time for sofas and tables?",
        "If I buy the {product}, how many weeks until it shows up?",
        "How long do large furniture orders take to ship?",
        "Is the {product} shipped right away or is there a wait?",
        "How long is the wait for big furniture deliveries?",
        "Roughly when would a new {product} land at my door?",
    ),
    cues=((r"lead time|how many weeks|\bwait\b|take to (arrive|ship)|be delivered|land at my door", 4.0),
          (r"furniture|sofa|table|bookshelf|armchair|ottoman", 1.0)),
    fact="2-3 weeks", wrong=("1-2 weeks", "4-6 weeks", "5-7 weeks"),
    says=("Large furniture ships in {v}.", "The {product} ships in {v}.",
          "The {product} is made to ship in {v}."),
    bare=("{v}.",),
    extras=("We'll call you to book a delivery window.", "Smaller items ship separately and sooner."),
)

PET_POLICY = Intent(
    name="pet_policy", kind="named",
    templates=(
        "Can I bring my dog to the store?",
        "Are pets allowed in your shops?",
        "Is your store dog friendly?",
        "Can my puppy come shopping with me?",
        "Do you allow pets inside?",
        "What's your policy on dogs in the store?",
        "Can I shop with my dog on a leash?",
        "Will you let me in with my pup?",
    ),
    cues=((r"\bdogs?\b|\bpets?\b|puppy|\bpup\b", 7.0),),
    fact="leashed dogs are welcome", wrong=("pets are not allowed", "only service animals are allowed"),
    says=("In all our stores, {v}.", "Good news: in every Maple & Pine store, {v}."),
    bare=("{v}.",),
    extras=("We keep water bowls by the door.", "Please keep them off the furniture displays."),
)

SUPPORT_PHONE_INTENT = Intent(
    name="customer_service_phone", kind="phone", mode="curt",
    templates=(
        "What's your phone number?",
        "How can I call customer service?",
        "Is there a number I can ring for help?",
        "I'd rather talk to a person. What number do I dial?",
        "What is the customer support phone line?",
        "Can I speak to someone on the phone?",
        "What's the best number to reach you?",
        "How do I get a human on the line?",
    ),
    cues=((r"phone|\bcall\b(?! it off)|\bring\b|number (do i dial|to reach|i can)|\bdial\b|on the line\b|speak to "
           r"someone|talk to a person", 7.0),),
    fact="1-800-555-0142", wrong=("1-800-555-0199", "1-800-555-0120", "1-888-555-0142"),
    says=("You can call us at {v}.", "Our support line is {v}.", "The number for customer service is {v}."),
    bare=("{v}.",),
    extras=("Lines are open 8am to 8pm every day.", "Have your order number ready to speed things up."),
)

INTENTS = (STORE_HOURS_INTENT, STORE_LOCATION, STORE_PICKUP, SHIPPING_TIME, SHIPPING_COST, PRODUCT_PRICE,
           PRODUCT_CARE, WARRANTY, FURNITURE_LEAD_TIME, PET_POLICY, SUPPORT_PHONE_INTENT)
